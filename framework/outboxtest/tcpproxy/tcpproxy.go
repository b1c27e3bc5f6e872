// Package tcpproxy is a loopback TCP proxy for fault-injection tests: route
// a database or broker connection through it, then Cut the link for a while
// and Restore it, to prove that nothing is lost while a service is
// unreachable.
//
//	p, err := tcpproxy.Start("127.0.0.1:5432")
//	if err != nil { ... }
//	defer p.Close()
//	dsn := "postgres://postgres@" + p.Addr() + "/test?sslmode=disable"
//	...
//	p.Cut()      // every connection drops; new ones are closed at once
//	time.Sleep(3 * time.Second)
//	p.Restore()  // new connections reach the target again
//
// Stall is the nastier variant of Cut: connections stay open but no byte
// flows in either direction (a black hole, like a dead peer behind a
// firewall), until Restore or Cut.
package tcpproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Mode is the proxy's current behaviour.
type Mode int

const (
	// Pass forwards bytes both ways (the normal state).
	Pass Mode = iota
	// Cut closes every connection and closes new ones as soon as they are
	// accepted (the client sees a reset/EOF, like a refused connection).
	Cut
	// Stall keeps connections open but forwards nothing (a black hole).
	Stall
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Cut:
		return "cut"
	case Stall:
		return "stall"
	}
	return "unknown"
}

// Proxy forwards TCP connections from a loopback listener to a target
// address. It is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu       sync.Mutex
	mode     Mode
	resume   chan struct{} // closed when a Stall ends
	conns    map[*pair]struct{}
	closed   bool
	accepted int
	wg       sync.WaitGroup
}

type pair struct{ client, server net.Conn }

func (p *pair) close() {
	p.client.Close()
	if p.server != nil {
		p.server.Close()
	}
}

// Start listens on a free loopback port and forwards every connection to
// target (host:port). Close stops it.
func Start(target string) (*Proxy, error) {
	if target == "" {
		return nil, errors.New("tcpproxy: empty target address")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: map[*pair]struct{}{}, resume: make(chan struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listen address (127.0.0.1:port): point clients here.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Accepted returns how many client connections the proxy has accepted so
// far (in any mode), so tests can check that a client reconnected.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut drops every open connection and closes new ones as soon as they are
// accepted, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.setModeLocked(Cut)
	conns := p.conns
	p.conns = map[*pair]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.close()
	}
}

// Stall stops forwarding bytes on every connection, open or new, without
// closing any, until Restore or Cut.
func (p *Proxy) Stall() {
	p.mu.Lock()
	p.setModeLocked(Stall)
	p.mu.Unlock()
}

// Restore returns to normal forwarding. Connections dropped by Cut stay
// dropped; clients must reconnect. Connections held by Stall resume.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.setModeLocked(Pass)
	p.mu.Unlock()
}

func (p *Proxy) setModeLocked(m Mode) {
	if p.mode == Stall && m != Stall {
		close(p.resume)
		p.resume = make(chan struct{})
	}
	p.mode = m
}

// Close stops listening, drops every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.setModeLocked(Cut)
	conns := p.conns
	p.conns = map[*pair]struct{}{}
	p.mu.Unlock()
	err := p.ln.Close()
	for c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		if p.closed || p.mode == Cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		pr := &pair{client: c}
		p.conns[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(pr)
	}
}

func (p *Proxy) serve(pr *pair) {
	defer p.wg.Done()
	defer p.forget(pr)
	if !p.waitPass(pr) {
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		pr.client.Close()
		return
	}
	p.mu.Lock()
	if _, live := p.conns[pr]; !live {
		p.mu.Unlock()
		s.Close()
		pr.client.Close()
		return
	}
	pr.server = s
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(pr, s, pr.client); done <- struct{}{} }()
	go func() { p.pipe(pr, pr.client, s); done <- struct{}{} }()
	<-done
	pr.close()
	<-done
}

func (p *Proxy) forget(pr *pair) {
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// waitPass blocks while the proxy stalls; it returns false when the
// connection was dropped meanwhile.
func (p *Proxy) waitPass(pr *pair) bool {
	for {
		p.mu.Lock()
		_, live := p.conns[pr]
		mode, resume := p.mode, p.resume
		p.mu.Unlock()
		if !live || mode == Cut {
			pr.close()
			return false
		}
		if mode == Pass {
			return true
		}
		select {
		case <-resume:
		case <-time.After(50 * time.Millisecond): // re-check for Cut/Close
		}
	}
}

// pipe copies src to dst, holding each chunk while the proxy stalls.
func (p *Proxy) pipe(pr *pair, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass(pr) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// Either side closing ends both directions: the protocols
			// proxied here (PostgreSQL, MySQL, NATS) never half-close.
			return
		}
	}
}
