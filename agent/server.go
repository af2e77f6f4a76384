package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/mbvm/mb/agent/guestmsg"
	"github.com/mbvm/mb/agent/internal/frame"
	"github.com/mbvm/mb/agent/qgaproto"
)

// MaxRequestSize is the longest request the agent accepts. A longer one is
// answered with a GenericError and skipped.
const MaxRequestSize = 1 << 20

// Version is the agent version reported by guest-info.
const Version = "0.1.0"

// errRetry is returned by a transport's Read when the host went away; the
// server drops any half-read request and reads on.
var errRetry = errors.New("host disconnected")

// server answers QGA requests. One server is shared by all connections of
// an agent, so exec results and file handles outlive a reconnect.
type server struct {
	log  *slog.Logger
	pid1 bool

	// Replaceable in tests.
	shutdown func(ctx context.Context, mode string) error
	procRoot string

	commands map[string]command
	messages *guestmsg.Queue
	execs    execTable
	files    fileTable
}

// handler runs one command. It returns the value of the "return" member, or
// an error: a *qgaproto.Error is sent as is, any other error as GenericError.
type handler func(ctx context.Context, args json.RawMessage) (any, error)

type command struct {
	run handler
	// noReply: on success no reply is sent (guest-shutdown).
	noReply bool
	// delimited: the reply is preceded by 0xFF (guest-sync-delimited).
	delimited bool
}

func newServer(opts Options) *server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &server{log: log, pid1: opts.PID1, procRoot: "/proc", messages: opts.Messages}
	s.shutdown = s.systemShutdown
	if opts.Shutdown != nil {
		s.shutdown = opts.Shutdown
	}
	s.execs.procs = map[int]*execProc{}
	s.files.open = map[int64]*openFile{}
	s.commands = s.commandTable()
	return s
}

// request is a decoded QGA request.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id,omitempty"`
}

// reply is what the server writes back.
type reply struct {
	Return any             `json:"return,omitempty"`
	Error  *qgaproto.Error `json:"error,omitempty"`
	ID     json.RawMessage `json:"id,omitempty"`
}

// serveStream answers the requests read from r on w until r fails with an
// error other than errRetry, or ctx is done. Replies are written one at a
// time, in request order.
func (s *server) serveStream(ctx context.Context, r io.Reader, w io.Writer) error {
	fr := frame.NewReader(r, MaxRequestSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		kind, obj, err := fr.Next()
		if errors.Is(err, errRetry) {
			fr.Reset()
			continue
		}
		if err != nil {
			return err
		}
		var out []byte
		switch kind {
		case frame.Delimiter:
			continue
		case frame.TooLarge:
			s.log.Warn("refused an oversized request", "limit", MaxRequestSize)
			out = encodeReply(reply{Error: genericError("request larger than %d bytes refused", MaxRequestSize)})
		case frame.Invalid:
			s.log.Debug("skipped a malformed request")
			out = encodeReply(reply{Error: genericError("invalid JSON in request")})
		case frame.Object:
			out = s.handle(ctx, obj)
		}
		if out == nil {
			continue
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
	}
}

// handle runs one request and returns the encoded reply, or nil when the
// command sends none.
func (s *server) handle(ctx context.Context, obj []byte) []byte {
	if a, ok := qgaproto.ParseExecInput(obj); ok {
		v, err := s.execInput(a)
		return s.encodeResult(qgaproto.ExecInputCommand, command{}, v, err, nil)
	}
	var req request
	if err := json.Unmarshal(obj, &req); err != nil {
		return encodeReply(reply{Error: genericError("invalid request: %v", err)})
	}
	if req.Execute == "" {
		return encodeReply(reply{Error: genericError("request has no 'execute' member"), ID: req.ID})
	}
	cmd, ok := s.commands[req.Execute]
	if !ok {
		return encodeReply(reply{Error: &qgaproto.Error{Class: qgaproto.ClassCommandNotFound,
			Desc: fmt.Sprintf("The command %s has not been found", req.Execute)}, ID: req.ID})
	}
	args := req.Arguments
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		args = json.RawMessage("{}")
	}
	v, err := cmd.run(ctx, args)
	return s.encodeResult(req.Execute, cmd, v, err, req.ID)
}

// encodeResult is the reply to command execute, which returned v and err.
func (s *server) encodeResult(execute string, cmd command, v any, err error, id json.RawMessage) []byte {
	if err != nil {
		var qe *qgaproto.Error
		if !errors.As(err, &qe) {
			qe = &qgaproto.Error{Class: qgaproto.ClassGenericError, Desc: err.Error()}
		}
		s.log.Debug("command failed", "command", execute, "error", qe.Desc)
		return encodeReply(reply{Error: qe, ID: id})
	}
	if cmd.noReply {
		return nil
	}
	if v == nil {
		v = struct{}{}
	}
	out := encodeReply(reply{Return: v, ID: id})
	if cmd.delimited {
		out = append([]byte{0xFF}, out...)
	}
	return out
}

func encodeReply(r reply) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(reply{Error: genericError("encode reply: %v", err), ID: r.ID})
	}
	return append(b, '\n')
}

func genericError(format string, a ...any) *qgaproto.Error {
	return &qgaproto.Error{Class: qgaproto.ClassGenericError, Desc: fmt.Sprintf(format, a...)}
}

// decodeArgs decodes a command's arguments strictly, like qemu-ga: an
// unknown argument is an error.
func decodeArgs(args json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return genericError("invalid arguments: %v", err)
	}
	return nil
}
