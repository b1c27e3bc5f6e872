// Package docs holds the test that checks every fenced code block of README.md
// and docs/*.md: Go blocks are vetted, YAML and JSON blocks parsed, and shell
// lines checked against the real CLI, Makefile and repository layout. The
// package has no API; see docs_test.go. It also holds end-to-end tests that
// need a driver where the module under test must not require one
// (outboxotel_test.go).
package docs
