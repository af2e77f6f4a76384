package sshkeys

import (
	"encoding/binary"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testServer is a real SSH server on 127.0.0.1 that presents hostSigner,
// accepts only authorized for user "mb", and answers an exec request by
// printing "ran: CMD" and exiting with status 3.
type testServer struct {
	ln   net.Listener
	Port int
	// conns counts the connections accepted.
	conns atomic.Int32
}

func startServer(t *testing.T, hostSigner ssh.Signer, authorized ssh.PublicKey) *testServer {
	t.Helper()
	return startServerOn(t, "127.0.0.1:0", hostSigner, authorized)
}

type sshError string

func (e sshError) Error() string { return string(e) }

const errUnauthorized = sshError("unauthorized")

func serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for r := range creqs {
				if r.Type != "exec" {
					_ = r.Reply(false, nil)
					continue
				}
				var p struct{ Cmd string }
				_ = ssh.Unmarshal(r.Payload, &p)
				_ = r.Reply(true, nil)
				_, _ = ch.Write([]byte("ran: " + p.Cmd + "\n"))
				status := make([]byte, 4)
				binary.BigEndian.PutUint32(status, 3)
				_, _ = ch.SendRequest("exit-status", false, status)
				return
			}
		}()
	}
}

func sshSigner(pemBytes []byte) (ssh.Signer, error) { return ssh.ParsePrivateKey(pemBytes) }

func itoa(n int) string { return strconv.Itoa(n) }

func startServerOn(t *testing.T, addr string, hostSigner ssh.Signer, authorized ssh.PublicKey) *testServer {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if c.User() == "mb" && string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, errUnauthorized
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := &testServer{ln: ln, Port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.conns.Add(1)
			go serveConn(c, cfg)
		}
	}()
	return srv
}

// keyedServer makes a VM directory with fresh keys and a server that
// presents its host key and accepts its client key.
func keyedServer(t *testing.T) (dir string, k *Keys, srv *testServer) {
	t.Helper()
	dir = t.TempDir()
	k, err := Ensure(dir, "vm")
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := sshSigner(k.HostPrivate)
	if err != nil {
		t.Fatal(err)
	}
	return dir, k, startServer(t, hostSigner, k.ClientSigner().PublicKey())
}
