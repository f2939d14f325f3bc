package test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/testnet"
)

// TestInterruptExits130: Ctrl-C stops a command with "interrupted" and
// exit code 130 (like restic), never "context canceled". The command is
// kept busy by an S3 endpoint that accepts connections and never answers.
func TestInterruptExits130(t *testing.T) {
	addr := testnet.NeverAnswers(t)
	loc := "s3://bucket/prefix?endpoint=" + addr + "&use_tls=false"
	cmd := exec.Command(coffer, "at", loc, "ls")
	cmd.Env = append(cleanEnv(), "COFFER_PASSPHRASE=x", "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // it is waiting for an answer now
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("coffer did not stop within 20 s of Ctrl-C")
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v after Ctrl-C, want 130\nstderr: %s", err, errb.String())
	}
	if got := errb.String(); !strings.Contains(got, "interrupted") || strings.Contains(got, "context canceled") {
		t.Fatalf("after Ctrl-C, stderr says %q; want \"interrupted\" and no \"context canceled\"", got)
	}
}
