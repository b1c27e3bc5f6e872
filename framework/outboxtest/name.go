package outboxtest

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
)

var uniqueSeq atomic.Int64

func randSuffix() string { return "_" + strconv.FormatUint(rand.Uint64()%1e6, 36) }
