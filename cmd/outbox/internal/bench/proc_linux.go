package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the relay process receive SIGTERM when the bench
// dies, so that a killed bench leaves no relay behind.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
}
