package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startedMarker is how the relay's JSON log announces that it claims
// events (outbox.Relay.Run logs it once its forwarder runs).
const startedMarker = `"msg":"relay started"`

// relayProc is one `outbox relay` child process.
type relayProc struct {
	cmd     *exec.Cmd
	started chan time.Time
	exited  chan struct{}

	mu        sync.Mutex
	tail      []string // last stderr lines, for error messages
	startLine string   // the "relay started" log line
	err       error
}

// startRelay starts cmd (an `outbox relay` command line with JSON logs on
// stderr) and returns once the relay logged that it started, with the time
// it did.
func startRelay(ctx context.Context, cmd *exec.Cmd) (*relayProc, time.Time, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, time.Time{}, err
	}
	dieWithParent(cmd)
	p := &relayProc{cmd: cmd, started: make(chan time.Time, 1), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, time.Time{}, fmt.Errorf("start relay: %w", err)
	}
	go p.readLog(stderr)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	select {
	case t := <-p.started:
		return p, t, nil
	case <-p.exited:
		return nil, time.Time{}, fmt.Errorf("relay exited before starting: %s", p.lastLines())
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, time.Time{}, fmt.Errorf("relay did not start within 30s: %s", p.lastLines())
	case <-ctx.Done():
		p.stop()
		return nil, time.Time{}, ctx.Err()
	}
}

func (p *relayProc) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	announced := false
	for sc.Scan() {
		line := sc.Text()
		if !announced && strings.Contains(line, startedMarker) {
			announced = true
			p.mu.Lock()
			p.startLine = line
			p.mu.Unlock()
			p.started <- time.Now()
		}
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 5 {
			p.tail = p.tail[len(p.tail)-5:]
		}
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *relayProc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "no output"
	}
	return strings.Join(p.tail, " | ")
}

// settings returns the fields of the process's "relay started" JSON log
// line (the settings it runs with), without time, level, msg, and the
// relay's id and table, which differ from run to run.
func (p *relayProc) settings() map[string]any {
	p.mu.Lock()
	line := p.startLine
	p.mu.Unlock()
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return nil
	}
	delete(m, "time")
	delete(m, "level")
	delete(m, "msg")
	delete(m, "relay")
	delete(m, "table")
	return m
}

func (p *relayProc) pid() int { return p.cmd.Process.Pid }

// alive reports an error when the relay exited.
func (p *relayProc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("relay exited: %s", p.lastLines())
	default:
		return nil
	}
}

// stop sends SIGTERM (a graceful relay shutdown), then SIGKILL after 15s.
func (p *relayProc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
