package qgaproto

// MessagesCommand is mb's extension through which the host collects what
// programs in the guest sent to mb-agent's command socket (mb.ready,
// mb.event, mb.metric): QGA is host-initiated, so the agent queues them
// and the host asks on its liveness ping. Stock qemu-ga has no such queue.
const MessagesCommand = "mb-get-messages"

// MessagesArgs are the arguments of MessagesCommand. After acknowledges
// every message up to that sequence number: the agent forgets them and
// returns the ones after it. A host whose reply got lost asks again with
// the same After and gets the same messages.
type MessagesArgs struct {
	After uint64 `json:"after"`
	// Instance is the Instance of the reply that After came from. The
	// agent ignores After when it is not its own: a restarted agent
	// numbers its messages from 1 again.
	Instance string `json:"instance,omitempty"`
}

// Messages is the reply of MessagesCommand.
type Messages struct {
	// Instance identifies this run of the agent (random, made at start).
	Instance string `json:"instance"`
	// Messages are the queued messages after MessagesArgs.After, oldest
	// first, at most MaxMessagesPerCall of them.
	Messages []GuestMessage `json:"messages"`
	// Ready lists every readiness the guest reported since the agent
	// started, whatever happened to the queue.
	Ready []Readiness `json:"ready,omitempty"`
	// Dropped counts the messages the agent dropped because its queue was
	// full (the oldest go first), since it started.
	Dropped uint64 `json:"dropped,omitempty"`
	// More is true when messages after the returned ones are queued.
	More bool `json:"more,omitempty"`
}

// Kinds of GuestMessage.
const (
	MessageEvent  = "event"
	MessageMetric = "metric"
	MessageReady  = "ready"
)

// GuestMessage is one message a guest program sent.
type GuestMessage struct {
	// Seq numbers the agent's messages from 1, without gaps except for
	// dropped ones.
	Seq uint64 `json:"seq"`
	// TimeNs is the guest's clock when the message arrived, in ns since
	// the epoch.
	TimeNs int64 `json:"time_ns"`
	// Kind is MessageEvent, MessageMetric or MessageReady.
	Kind string `json:"kind"`
	// Level and Text of an event.
	Level string `json:"level,omitempty"`
	Text  string `json:"text,omitempty"`
	// Plugin and Fields of a metric set.
	Plugin string             `json:"plugin,omitempty"`
	Fields map[string]float64 `json:"fields,omitempty"`
	// Name and Detail of a readiness.
	Name   string `json:"name,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Readiness is one mb.ready a guest program sent: its name ("default"
// when it gave none), its detail, and when (guest clock, ns since the
// epoch).
type Readiness struct {
	Name   string `json:"name"`
	Detail string `json:"detail,omitempty"`
	TimeNs int64  `json:"time_ns"`
}

// Limits on what a guest sends; both sides apply them (the host never
// trusts the guest).
const (
	// MaxMessageText is the longest event text, in bytes.
	MaxMessageText = 4096
	// MaxMetricFields is the most fields in one metric set.
	MaxMetricFields = 256
	// MaxMessagesPerCall is the most messages one MessagesCommand returns.
	MaxMessagesPerCall = 256
	// MaxReadiness is the most readiness names kept.
	MaxReadiness = 64
	// MaxNameLen is the longest readiness name, plugin or field name.
	MaxNameLen = 128
)
