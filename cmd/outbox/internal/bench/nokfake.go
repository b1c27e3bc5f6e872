//go:build !kfake

package bench

import "errors"

// startKfake refuses kfake:// in the operator binary, which links no test
// fake: build with -tags kfake (make bench does) to get it.
func startKfake() (addr string, stop func(), err error) {
	return "", nil, errors.New("kfake:// needs an outbox binary built with -tags kfake (make bench builds one); point --broker-url at a real Kafka otherwise")
}
