package main

// Background CPU load: "with other work on the machine" made repeatable.
// -load N starts N processes (this binary again) that spin on the CPU at
// the nice level of ordinary work (0) for the whole bench, so that both
// brokers meet the same competition, run for run.

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// burnEnv marks a child started to burn CPU.
const burnEnv = "FIREHOSE_BENCH_BURN"

// burnIfAsked turns this process into a burner when it was started as one,
// and never returns then. The burner ends with its parent (Pdeathsig) and,
// as a last resort, after a day.
func burnIfAsked() {
	if os.Getenv(burnEnv) != "1" {
		return
	}
	end := time.Now().Add(24 * time.Hour)
	for x := uint64(1); ; x = x*6364136223846793005 + 1442695040888963407 {
		if x&0xffffff == 0 && time.Now().After(end) {
			os.Exit(0)
		}
	}
}

// startLoad starts n burners and returns what stops them.
func startLoad(n int) (stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for range n {
		c := exec.Command(self)
		c.Env = append(os.Environ(), burnEnv+"=1")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("starting a CPU burner: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}
