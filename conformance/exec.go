package conformance

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// ExecEnv names the environment variable that turns a program calling
// ExecMain into the suite process of Exec. Its value is internal (JSON);
// it is inherited by the subprocess relays of the SIGKILL test, which
// re-execute the same program.
const ExecEnv = "OUTBOXKIT_CONFORMANCE_EXEC"

// ExecTest is the name of the top-level test in the suite process: the
// contract tests are ExecTest/C1/commit_publishes and so on.
const ExecTest = "TestConformance"

// execSpec is ExecEnv's value.
type execSpec struct {
	DatabaseURL string `json:"db"`
	BrokerURL   string `json:"broker"`
}

// ExecMain makes a program (a CLI such as `outbox`) able to run the suite
// without the go tool: call it first thing in main, or from an init
// function, before anything parses os.Args. When ExecEnv is set, ExecMain
// builds the cell with HarnessFromURLs, runs Run through testing.Main with
// the -test.* flags of os.Args (testing.Main is the Go 1 compatible entry
// point of the testing package) and exits; otherwise it returns at once.
//
// The SIGKILL test of the suite re-executes os.Args[0] with -test.run and
// an environment switch: that subprocess inherits ExecEnv, reaches ExecMain
// again, and Run turns it into the relay. Exec starts the suite process
// with os.Args[0] set to the program's absolute path, so this works
// whatever directory the tests run in.
func ExecMain() {
	raw := os.Getenv(ExecEnv)
	if raw == "" {
		return
	}
	var spec execSpec
	err := json.Unmarshal([]byte(raw), &spec)
	var h Harness
	if err == nil {
		h, err = HarnessFromURLs(spec.DatabaseURL, spec.BrokerURL)
	}
	match := func(pat, str string) (bool, error) { return regexp.MatchString(pat, str) }
	testing.Main(match, []testing.InternalTest{{Name: ExecTest, F: func(t *testing.T) {
		if err != nil {
			t.Fatalf("conformance: %s: %v", ExecEnv, err)
		}
		Run(t, h)
	}}}, nil, nil)
}

// ExecConfig configures Exec.
type ExecConfig struct {
	// DatabaseURL and BrokerURL name the cell, in the forms HarnessFromURLs
	// takes. Both are required.
	DatabaseURL, BrokerURL string

	// Short runs the suite at the small counts of go test -short.
	Short bool

	// Run selects contract tests like go test -run below the cell:
	// "C1|C7" (whole contract lines), "C2/broker_cut" (one test),
	// "C4|C5/poison". Empty runs every test.
	Run string

	// Parallel is the most tests running at once (-test.parallel). Zero
	// means 4: the tests mostly wait on servers.
	Parallel int

	// Timeout bounds the whole run (-test.timeout): the suite process then
	// panics, listing the tests still running, and those are reported as
	// failed. Zero means 30 minutes.
	Timeout time.Duration

	// Executable is the program re-executed as the suite process; it must
	// call ExecMain first. Empty means os.Executable().
	Executable string

	// Log, when non-nil, receives the suite process's output as go test -v
	// prints it, while it runs.
	Log io.Writer

	// Progress, when non-nil, is called as each contract test ends.
	Progress func(TestResult)
}

// Exec runs the suite against the cell cfg names in a subprocess (the suite
// process: Executable with ExecEnv set), reads its go test -v output as it
// comes, and returns the Report. A test that fails is in the Report, not
// an error: the error is for a run that could not start (bad URL, bad Run
// pattern, no executable). A suite process that dies (panic, timeout,
// signal) still yields a Report: the tests it was running are failed with
// its last output.
func Exec(ctx context.Context, cfg ExecConfig) (*Report, error) {
	h, err := HarnessFromURLs(cfg.DatabaseURL, cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	if _, err := regexp.Compile(cfg.Run); err != nil {
		return nil, fmt.Errorf("conformance: run pattern %q: %w", cfg.Run, err)
	}
	exe := cfg.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("conformance: locating the executable: %w", err)
		}
	}
	spec, err := json.Marshal(execSpec{DatabaseURL: cfg.DatabaseURL, BrokerURL: cfg.BrokerURL})
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	parallel := cfg.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	pattern := runPatternFor(cfg.Run)
	args := []string{
		"-test.run=" + pattern, "-test.v=test2json", "-test.count=1",
		fmt.Sprintf("-test.parallel=%d", parallel),
		"-test.timeout=" + timeout.String(),
	}
	if cfg.Short {
		args = append(args, "-test.short")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), ExecEnv+"="+string(spec))
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w // one pipe: the order of the lines is kept
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("conformance: starting the suite process: %w", err)
	}
	w.Close()
	p := newStreamParser(cfg.Log, cfg.Progress)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		p.line(sc.Bytes())
	}
	r.Close()
	waitErr := cmd.Wait()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(waitErr, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 1 // killed by a signal
		}
	case waitErr != nil:
		return nil, fmt.Errorf("conformance: suite process: %w", waitErr)
	}
	rep := p.report(h, cfg, code, time.Since(start))
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	return rep, nil
}

// runPatternFor returns the -test.run pattern selecting run below ExecTest.
// The testing package splits a pattern at top-level '|' into alternatives
// before splitting each at '/', so every alternative gets the prefix:
// "C1|C7" becomes "^TestConformance$/C1|^TestConformance$/C7".
func runPatternFor(run string) string {
	top := "^" + ExecTest + "$"
	if run == "" {
		return top
	}
	var alts []string
	depth, start := 0, 0
	for i := 0; i < len(run); i++ {
		switch run[i] {
		case '\\':
			i++
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '|':
			if depth == 0 {
				alts = append(alts, run[start:i])
				start = i + 1
			}
		}
	}
	alts = append(alts, run[start:])
	for i, a := range alts {
		alts[i] = top + "/" + a
	}
	return strings.Join(alts, "|")
}

// streamParser turns the suite process's -test.v=test2json output into
// per-test results: lines starting with the framing byte ^V are the
// testing package's own (=== RUN/PAUSE/CONT/NAME, --- PASS/FAIL/SKIP);
// every other line is output of the test named last.
type streamParser struct {
	log      io.Writer
	progress func(TestResult)
	cur      string
	tests    map[string]*TestResult // contract tests by full name
	order    []string
	top      *testState // ExecTest and the contract-line tests
	other    bytes.Buffer
}

type testState struct {
	status Status
	ended  bool
}

func newStreamParser(log io.Writer, progress func(TestResult)) *streamParser {
	return &streamParser{log: log, progress: progress, tests: map[string]*TestResult{}, top: &testState{}}
}

var resultRe = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

func (p *streamParser) line(b []byte) {
	framing := len(b) > 0 && b[0] == 0x16
	if framing {
		b = b[1:]
	}
	text := string(b)
	if p.log != nil {
		fmt.Fprintln(p.log, text)
	}
	if !framing {
		p.output(text)
		return
	}
	switch {
	case strings.HasPrefix(text, "=== "):
		kind, name, _ := strings.Cut(text[4:], " ")
		name = strings.TrimSpace(name)
		p.cur = name
		if kind == "RUN" {
			p.start(name)
		}
	case strings.HasPrefix(text, "--- "):
		m := resultRe.FindStringSubmatch(text)
		if m == nil {
			p.cur = ""
			return
		}
		// In -v mode a test's output is streamed before its result line:
		// what follows belongs to no test until the next header.
		p.cur = ""
		p.end(m[2], m[1], m[3])
	default: // PASS, FAIL, ok: the end
		p.cur = ""
	}
}

// contract returns the contract test (ExecTest/Cn/name) name belongs to,
// or "" for ExecTest itself and the line tests.
func contract(name string) (string, string, bool) {
	parts := strings.SplitN(name, "/", 4)
	if len(parts) < 3 || parts[0] != ExecTest {
		return "", "", false
	}
	return parts[1], parts[2], true
}

func (p *streamParser) start(name string) {
	line, test, ok := contract(name)
	if !ok {
		return
	}
	key := line + "/" + test
	if _, seen := p.tests[key]; !seen {
		p.tests[key] = &TestResult{Result: Result{Suite: ExecTest, Line: line, Test: test}}
		p.order = append(p.order, key)
	}
}

func (p *streamParser) end(name, status, secs string) {
	line, test, ok := contract(name)
	if !ok {
		if name == ExecTest {
			p.top.ended = true
			p.top.status = statusOf(status)
		}
		return
	}
	if strings.Count(name, "/") > 2 {
		return // a subtest of a contract test: its parent reports
	}
	tr := p.tests[line+"/"+test]
	if tr == nil {
		return
	}
	tr.Status = statusOf(status)
	var d float64
	fmt.Sscan(secs, &d)
	tr.Duration = time.Duration(d * float64(time.Second))
	if tr.Status == StatusSkip {
		tr.Reason = lastMessage(tr.Output)
	}
	if p.progress != nil {
		p.progress(*tr)
	}
}

func statusOf(s string) Status {
	switch s {
	case "PASS":
		return StatusPass
	case "SKIP":
		return StatusSkip
	}
	return StatusFail
}

func (p *streamParser) output(text string) {
	if line, test, ok := contract(p.cur); ok {
		if tr := p.tests[line+"/"+test]; tr != nil {
			tr.Output += text + "\n"
			return
		}
	}
	p.other.WriteString(text + "\n")
}

// fileLineRe matches the "    file.go:12: " prefix testing puts on a message.
var fileLineRe = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// lastMessage returns the last message of a test's output without its
// file:line prefix (a skip's reason).
func lastMessage(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if fileLineRe.MatchString(lines[i]) {
			return strings.TrimSpace(fileLineRe.ReplaceAllString(strings.Join(lines[i:], " "), ""))
		}
	}
	return strings.TrimSpace(strings.Join(lines, " "))
}

func (p *streamParser) report(h Harness, cfg ExecConfig, code int, wall time.Duration) *Report {
	rep := &Report{
		Cell: CellInfo{
			Suite: ExecTest, Cell: h.Name, Database: h.Database.Name, Broker: h.Broker.Name,
			Features: h.Broker.Features, Light: h.Light, Short: cfg.Short, Duration: wall,
		},
		DatabaseURL: outboxbroker.Redact(cfg.DatabaseURL),
		BrokerURL:   outboxbroker.Redact(cfg.BrokerURL),
		Run:         cfg.Run,
		Output:      p.other.String(),
		ExitCode:    code,
	}
	if p.top.ended && p.top.status == StatusSkip && len(p.order) == 0 {
		rep.Cell.Skipped = cmp.Or(lastMessage(rep.Output), "skipped")
	}
	for _, key := range p.order {
		tr := *p.tests[key]
		tr.Cell = h.Name
		if tr.Status == "" {
			tr.Status = StatusFail
			tr.Output += fmt.Sprintf("(the suite process ended, exit status %d, before this test finished: see the suite output)\n", code)
		}
		rep.Tests = append(rep.Tests, tr)
	}
	return rep
}
