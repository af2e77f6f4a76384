// Package hbcwire encodes and decodes the datagrams of hbd's heartbeat
// protocol ("hbc"), as mb reads it. It uses the standard library only, so
// both the monitor (receiver) and mb-agent (client) link it.
//
// # Datagram
//
// A datagram is
//
//	!<ID>: <payload>
//
// ID is 1 to 16 ASCII letters, digits or underscores (HTB, PLG, ACK, CMD,
// UPD). The single space after the colon is optional when decoding and
// always written when encoding. The payload is either zlib-compressed
// (RFC 1950, what hbc sends) or plain text; the decoder accepts both: a
// payload that starts with a valid zlib header is inflated, and if that
// fails it is read as plain text. A trailing CR/LF of a plain payload is
// ignored. Encoders write payloads under 512 bytes as zlib streams of
// stored blocks (valid zlib that any inflater reads, and cheap to make),
// longer ones compressed.
//
// The plain payload is key=value pairs joined by ';'. Empty pairs are
// skipped; a pair without '=' or with an empty key is dropped and counted
// in [Message.BadFields]. Keys are trimmed of spaces and may not contain
// '=' or ';'. A key may repeat; [Message.Get] returns the last value.
//
// # Values
//
//   - floats: decimal with 5 places ("0.25000"); [Message.Float] reads any
//     decimal form
//   - integers: decimal
//   - booleans: 1 or 0 (true, false, yes, no are read too)
//   - lists and dicts: JSON prefixed with '@' (@[1,2] or @{"a":1})
//   - strings: as is, unless they contain ';', CR or LF or start with '@':
//     then as an '@'-prefixed JSON string (@"a;b"), so they survive the
//     framing
//
// The encoder writes ';' inside @-JSON as \u003b, so a value never
// contains the separator; the decoder splits at every ';'.
//
// # Limits
//
// Decoding refuses a datagram over [MaxDatagram] bytes, a payload that
// inflates past [MaxPayload] bytes (zip bombs), and more than [MaxFields]
// fields, with errors that wrap [ErrTooLarge], [ErrInflate] and
// [ErrTooManyFields]; other framing faults wrap [ErrMalformed]. Encoding
// refuses what decoding would refuse.
//
// # Signatures
//
// With a shared key, a message carries a last field sig=<hex> whose value
// is HMAC-SHA256(key, ID + ":" + P), lowercase hex, where P is the plain
// payload text before ";sig=" (the exact bytes the sender wrote). A
// signed message should carry a timestamp so the verifier can refuse
// replays; [Message.Verify] checks the MAC only.
//
// # Messages and keys
//
// HTB, client to server, every interval:
//
//	name       host name (required)
//	timestamp  sender's Unix time in seconds, float (required)
//	interval   seconds until the next heartbeat, integer (required)
//	rtt        the last RTT the client measured, seconds, float
//	acks       number of ACKs the client has received, integer
//	boot       1 on the boot message (sent once, on the first connection)
//	shutdown   1 on the shutdown message (the client is stopping cleanly)
//	message    free text (the -m one-off message)
//	owner      the user that claims the host
//	seq        sequence number of this heartbeat, integer (echoed in the ACK)
//	ack_sent   the "sent" value of the last ACK the client received, echoed
//	ack_held   seconds between receiving that ACK and sending this HTB,
//	           float; with ack_sent the server measures the RTT on its own
//	           clock: receive time - ack_sent - ack_held
//
// PLG, client to server, per plugin run:
//
//	name       host name (required)
//	plugin     plugin name (required), e.g. cpu_monitor
//	timestamp  sender's Unix time, float
//	<field>    the plugin's fields; nested data as @-JSON
//
// ACK, server to client, answers every HTB:
//
//	timestamp       the HTB's timestamp, echoed (the client's RTT is now
//	                minus this)
//	seq             the HTB's seq, echoed when it had one
//	recv            the server's receive time, Unix seconds, float
//	                (kernel timestamp where available)
//	sent            the server's send time of this ACK, Unix seconds, float
//	rtt             the RTT the server last measured for this host, seconds
//	request_update  1 when the server has no plugin data for the host yet:
//	                the client resends its info plugins
//
// CMD, server to client, when a manager queued a command:
//
//	id         command id (echo it in the client's PLG reply)
//	command    the command line
//	timestamp  server's Unix time, float
//
// UPD, server to client, when a self-update was queued:
//
//	id         request id
//	url        where to fetch the installer (install.sh)
//	timestamp  server's Unix time, float
//
// A client must obey CMD and UPD only when they are signed with the shared
// key and fresh: anyone who can send UDP to the client can forge them.
package hbcwire
