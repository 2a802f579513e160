package testenv

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP to an address until frozen, then holds every
// connection open without moving a byte; once thawed, those connections
// are dropped (what the client gave up on is not delivered late) and new
// ones are forwarded.
type Proxy struct {
	Addr   string      // host:port to connect to
	Frozen atomic.Bool // set to freeze, clear to thaw
}

// FreezingProxy starts a Proxy on 127.0.0.1 to upstream, closed when the
// test ends: a wedged gateway or network for tests of stall timeouts.
func FreezingProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &Proxy{Addr: ln.Addr().String()}
	// wait sits out a freeze and reports whether there was one.
	wait := func() bool {
		froze := false
		for p.Frozen.Load() {
			froze = true
			time.Sleep(20 * time.Millisecond)
		}
		return froze
	}
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			if wait() {
				return
			}
			n, err := src.Read(buf)
			if wait() {
				return
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return p
}
