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

const (
	readyPrefix = "mam-gateway listening on "
	keyPrefix   = "mam-gateway admin key "
)

// gateway is a real gateway process: its address and the admin API key it created at start.
type gateway struct {
	target string
	apiKey string
}

// startGateway runs clients/testing/start_gateway.py (a real gateway on a free port, fresh
// SQLite file, authentication on). The launcher prints the admin key, then the address. The
// gateway stops when the test ends: closing the launcher's stdin makes it send SIGTERM and wait.
func startGateway(t *testing.T) gateway {
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
	ready := make(chan gateway, 1)
	go func() {
		var key string
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			line := scanner.Text()
			switch {
			case strings.HasPrefix(line, keyPrefix):
				key = strings.TrimSpace(strings.TrimPrefix(line, keyPrefix))
			case strings.HasPrefix(line, readyPrefix):
				ready <- gateway{target: strings.TrimSpace(strings.TrimPrefix(line, readyPrefix)), apiKey: key}
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
	case g := <-ready:
		if g.apiKey == "" {
			t.Fatal("the gateway launcher printed no admin key")
		}
		return g
	case err := <-exited:
		exited <- err
		t.Fatalf("gateway launcher exited before the gateway was ready: %v", err)
	case <-time.After(150 * time.Second):
		t.Fatal("gateway not ready after 150 s")
	}
	return gateway{}
}
