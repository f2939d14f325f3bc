// Package testnet has network peers for tests: servers that misbehave the
// way real ones do, on 127.0.0.1 only.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// NeverAnswers returns the address of a listener that accepts every
// connection, holds it open and never answers, as a hung server does. It
// closes when the test ends.
func NeverAnswers(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
