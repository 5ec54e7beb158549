// pause holds a pod's namespaces open for as long as the pod lives. As PID 1 of the sandbox it
// also reaps the zombies that the shared PID namespace of a pod can leave it, and it exits
// at SIGINT or SIGTERM (PID 1 gets no default handlers from the kernel).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
