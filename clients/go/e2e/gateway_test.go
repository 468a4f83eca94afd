package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const readyPrefix = "mam-gateway listening on "

// startGateway runs clients/testing/start_gateway.py (a real gateway on a free port, fresh
// SQLite file) and returns its address. The gateway stops when the test ends: closing the
// launcher's stdin makes it send SIGTERM and wait.
func startGateway(t *testing.T) string {
	t.Helper()
	launcher, err := filepath.Abs(filepath.Join("..", "..", "testing", "start_gateway.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", launcher)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", launcher, err)
	}
	exited := make(chan error, 1)
	address := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if line := scanner.Text(); strings.HasPrefix(line, readyPrefix) {
				address <- strings.TrimSpace(strings.TrimPrefix(line, readyPrefix))
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("gateway launcher: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("gateway launcher did not stop within 30 s")
		}
	})
	select {
	case a := <-address:
		return a
	case err := <-exited:
		exited <- err
		t.Fatalf("gateway launcher exited before the gateway was ready: %v", err)
	case <-time.After(150 * time.Second):
		t.Fatal("gateway not ready after 150 s")
	}
	return ""
}
