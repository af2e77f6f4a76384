package auth

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestSessionLifecycle(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := NewSessions()
	s.Now = c.now
	tok, sess, err := s.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) < 43 || sess.CSRF == "" || sess.CSRF == tok {
		t.Fatalf("token %q csrf %q: want 256-bit tokens, distinct", tok, sess.CSRF)
	}
	got, ok := s.Lookup(tok)
	if !ok || got.User != "alice" {
		t.Fatalf("lookup: %+v %v", got, ok)
	}
	if _, ok := s.Lookup(tok + "x"); ok {
		t.Fatal("a different token was accepted")
	}
	if !got.CheckCSRF(sess.CSRF) || got.CheckCSRF("") || got.CheckCSRF("nope") {
		t.Fatal("CSRF check wrong")
	}
	c.t = c.t.Add(DefaultSessionTTL - time.Second)
	if _, ok := s.Lookup(tok); !ok {
		t.Fatal("session ended before its 24 h")
	}
	c.t = c.t.Add(time.Second)
	if _, ok := s.Lookup(tok); ok {
		t.Fatal("expired session accepted")
	}
}

func TestSessionsStoredHashed(t *testing.T) {
	s := NewSessions()
	tok, _, err := s.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	for id := range s.byID {
		if string(id[:]) == tok {
			t.Fatal("the token itself is stored")
		}
	}
}

func TestEndUserKeepsOne(t *testing.T) {
	s := NewSessions()
	a1, _, _ := s.Create("alice")
	a2, _, _ := s.Create("alice")
	b, _, _ := s.Create("bob")
	if n := s.EndUser("alice", a1); n != 1 {
		t.Fatalf("ended %d, want 1", n)
	}
	if _, ok := s.Lookup(a1); !ok {
		t.Error("the kept session ended")
	}
	if _, ok := s.Lookup(a2); ok {
		t.Error("the other session lives on")
	}
	if _, ok := s.Lookup(b); !ok {
		t.Error("another user's session ended")
	}
	s.End(a1)
	if _, ok := s.Lookup(a1); ok {
		t.Error("logout did not end the session")
	}
}

func TestLimiter(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewLimiter()
	l.Now = c.now
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allowed("u:alice"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.Fail("u:alice")
	}
	ok, wait := l.Allowed("u:alice")
	if ok || wait <= 0 {
		t.Fatalf("allowed after 5 failures (wait %v)", wait)
	}
	if ok, _ := l.Allowed("u:bob"); !ok {
		t.Fatal("another key refused")
	}
	c.t = c.t.Add(5 * time.Minute)
	if ok, _ := l.Allowed("u:alice"); !ok {
		t.Fatal("still refused after the window")
	}
}
