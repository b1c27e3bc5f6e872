// Command modproxy serves the modules of the outboxkit workspace as if they
// were published, and checks what a release needs. It is a development tool
// of this repository (see docs/releasing.md), run by the Makefile:
//
//	modproxy build -root DIR -version V -out PROXYDIR
//	    writes a GOPROXY directory (use it as GOPROXY=file://PROXYDIR) that
//	    serves every module of DIR/go.work at version V, zipped from the
//	    working tree with golang.org/x/mod/zip. Modules are zipped in
//	    dependency order and each zip's go.sum gets the hashes of the sibling
//	    zips it depends on, as the release procedure's go get does, so that
//	    `go install <module>/cmd/outbox@V` verifies like a published release.
//	modproxy deps -root DIR
//	    fails, naming the module, the dependency and the versions, when two
//	    modules of DIR/go.work require different versions of one dependency,
//	    when a module requires a sibling at another version than the others,
//	    or when a go.mod holds a replace directive.
//	modproxy doc -out SCRIPT FILE.md...
//	    writes a bash script that replays the walkthrough of the Markdown
//	    files: the fenced blocks marked for install-check (see markers.go).
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: modproxy build|deps|doc [flags] (see the package comment)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = buildCmd(os.Args[2:])
	case "deps":
		err = depsCmd(os.Args[2:])
	case "doc":
		err = docCmd(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "modproxy: unknown command %q (build, deps, doc)\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}
