package tcpproxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// echoServer answers every line with the same line until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func setup(t *testing.T) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *tcpproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip writes a line and reads the echo; it returns the error instead
// of failing so tests can assert on failures.
func roundTrip(c net.Conn, r *bufio.Reader, line string, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func TestProxy(t *testing.T) {
	t.Parallel()

	t.Run("forwards both ways", func(t *testing.T) {
		t.Parallel()
		p := setup(t)
		c, r := dial(t, p)
		for range 3 {
			if err := roundTrip(c, r, "hello", time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if p.Mode() != tcpproxy.Pass || p.Accepted() != 1 {
			t.Fatalf("mode %s accepted %d", p.Mode(), p.Accepted())
		}
	})

	t.Run("cut drops open connections and refuses new ones until restore", func(t *testing.T) {
		t.Parallel()
		p := setup(t)
		c, r := dial(t, p)
		if err := roundTrip(c, r, "before", time.Second); err != nil {
			t.Fatal(err)
		}
		p.Cut()
		if err := roundTrip(c, r, "during", time.Second); err == nil {
			t.Fatal("open connection still works after Cut")
		}
		c2, r2 := dial(t, p) // the listener accepts, then closes at once
		if err := roundTrip(c2, r2, "new", time.Second); err == nil {
			t.Fatal("new connection works while cut")
		}
		p.Restore()
		c3, r3 := dial(t, p)
		if err := roundTrip(c3, r3, "after", time.Second); err != nil {
			t.Fatalf("after restore: %v", err)
		}
	})

	t.Run("stall holds bytes without closing, restore resumes them", func(t *testing.T) {
		t.Parallel()
		p := setup(t)
		c, r := dial(t, p)
		if err := roundTrip(c, r, "before", time.Second); err != nil {
			t.Fatal(err)
		}
		p.Stall()
		if err := roundTrip(c, r, "held", 300*time.Millisecond); err == nil {
			t.Fatal("bytes flowed while stalled")
		}
		p.Restore()
		// The held line arrives now, on the same connection.
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		got, err := r.ReadString('\n')
		if err != nil || got != "held\n" {
			t.Fatalf("after restore got %q, %v", got, err)
		}
		if err := roundTrip(c, r, "after", time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cut ends a stall", func(t *testing.T) {
		t.Parallel()
		p := setup(t)
		c, r := dial(t, p)
		p.Stall()
		_, _ = io.WriteString(c, "x\n")
		p.Cut()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := r.ReadString('\n'); err == nil || isTimeout(err) {
			t.Fatalf("want the connection closed, got %v", err)
		}
	})

	t.Run("close stops everything and is idempotent", func(t *testing.T) {
		t.Parallel()
		p := setup(t)
		c, r := dial(t, p)
		if err := roundTrip(c, r, "x", time.Second); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond); err == nil {
			t.Fatal("listener still open after Close")
		}
	})

	t.Run("unreachable target closes the client", func(t *testing.T) {
		t.Parallel()
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		p, err := tcpproxy.Start(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, r := dial(t, p)
		if err := roundTrip(c, r, "x", 2*time.Second); err == nil || isTimeout(err) {
			t.Fatalf("want closed connection, got %v", err)
		}
	})

	t.Run("empty target is an error", func(t *testing.T) {
		t.Parallel()
		if _, err := tcpproxy.Start(""); err == nil {
			t.Fatal("want error")
		}
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
