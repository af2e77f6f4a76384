package qgaproto

// Streaming exec (mb's extension). A command started with guest-exec and
// "mb-stream": true keeps its output in a bounded buffer per stream; the
// host drains it with ExecReadCommand while the command runs, which holds
// the command back (its pipe fills) when the host reads slowly. Its stdin
// is fed with ExecInputCommand ("mb-stdin-stream" is implied), and a
// command on a pseudo-terminal ("mb-pty") takes ExecResizeCommand. The
// entry is forgotten once a read reported exited, or on ExecKillCommand.

// ExecReadCommand returns what a streamed command wrote since the last
// read, waiting up to wait-ms for something to arrive.
const ExecReadCommand = "mb-exec-read"

// ExecResizeCommand sets the window size of a command's pseudo-terminal.
const ExecResizeCommand = "mb-exec-resize"

// MaxExecRead is the most output of one stream an ExecReadCommand returns.
const MaxExecRead = 256 << 10

// MaxExecReadWait bounds wait-ms: a read holds the agent channel, which
// other calls share, for at most this long.
const MaxExecReadWait = 500

// WinSize is a terminal's size in characters.
type WinSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// ExecReadArgs are the arguments of ExecReadCommand.
type ExecReadArgs struct {
	PID int `json:"pid"`
	// WaitMs is how long to wait when nothing is buffered (at most
	// MaxExecReadWait; 0 answers at once).
	WaitMs int `json:"wait-ms,omitempty"`
}

// ExecRead is the reply of ExecReadCommand. Exited is set once the
// command exited and all its output was returned (this reply included);
// ExitCode or Signal then says how it ended.
type ExecRead struct {
	OutData  []byte `json:"out-data,omitempty"`
	ErrData  []byte `json:"err-data,omitempty"`
	Exited   bool   `json:"exited"`
	ExitCode *int   `json:"exitcode,omitempty"`
	Signal   *int   `json:"signal,omitempty"`
}

// ExecResizeArgs are the arguments of ExecResizeCommand.
type ExecResizeArgs struct {
	PID int `json:"pid"`
	WinSize
}

// ExecInputResult is the reply of ExecInputCommand for a streamed command:
// the agent queues what fits (a bounded queue it writes to the command in
// the background) without waiting, and the host sends the rest again
// later, so a command that does not read never holds the channel its
// output is read on. EOF applies only when all the data was taken.
type ExecInputResult struct {
	Written int `json:"written"`
}
