//go:build !linux

package bench

import "os/exec"

// dieWithParent has no portable equivalent outside Linux; CPU and memory
// figures are Linux-only too (read from /proc).
func dieWithParent(*exec.Cmd) {}
