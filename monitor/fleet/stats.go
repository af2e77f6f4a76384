package fleet

import "sync/atomic"

// counters are the fleet's fault and traffic counters.
type counters struct {
	datagrams, htb, plg, unknownID         atomic.Uint64
	tooLarge, inflate, tooManyFields       atomic.Uint64
	malformed, badFields, badSig, unsigned atomic.Uint64
	stale, acks, cmds, sendErrors          atomic.Uint64
	acksLimited                            atomic.Uint64
	hostsRefused, engineErrors             atomic.Uint64
	registrations, registerRefused         atomic.Uint64
	polls, pollErrors                      atomic.Uint64
	dnsUpdates, dnsFailures                atomic.Uint64
}

// Stats are the fleet's counters since it started.
type Stats struct {
	// Datagrams received; HTB and PLG ingested; UnknownID datagrams with
	// another ID.
	Datagrams uint64 `json:"datagrams"`
	HTB       uint64 `json:"htb"`
	PLG       uint64 `json:"plg"`
	UnknownID uint64 `json:"unknown_id"`
	// Dropped datagrams by cause: over 64 KiB, inflating past 1 MiB, more
	// than 1024 fields, malformed (framing, missing name, bad values).
	TooLarge      uint64 `json:"too_large"`
	Inflate       uint64 `json:"inflate_limit"`
	TooManyFields uint64 `json:"too_many_fields"`
	Malformed     uint64 `json:"malformed"`
	// BadFields counts fields dropped from datagrams that were kept.
	BadFields uint64 `json:"bad_fields"`
	// BadSignature: sig did not verify; Unsigned: unsigned where a
	// signature is required; Stale: a signed heartbeat replayed or too old.
	BadSignature uint64 `json:"bad_signature"`
	Unsigned     uint64 `json:"unsigned"`
	Stale        uint64 `json:"stale"`
	// ACKs, CMDs/UPDs sent and send errors; ACKsLimited heartbeats left
	// unanswered past the per-address rate.
	ACKs        uint64 `json:"acks"`
	ACKsLimited uint64 `json:"acks_limited"`
	Commands    uint64 `json:"commands"`
	SendErrors  uint64 `json:"send_errors"`
	// HostsRefused: new hosts refused past max_hosts; EngineErrors:
	// observations the engine refused.
	HostsRefused uint64 `json:"hosts_refused"`
	EngineErrors uint64 `json:"engine_errors"`
	// Registrations accepted and refused (/api/register).
	Registrations   uint64 `json:"registrations"`
	RegisterRefused uint64 `json:"register_refused"`
	// Socktop polls made and failed.
	Polls      uint64 `json:"socktop_polls"`
	PollErrors uint64 `json:"socktop_errors"`
	// DNS updates made and failed attempts.
	DNSUpdates  uint64 `json:"dns_updates"`
	DNSFailures uint64 `json:"dns_failures"`
}

// Stats returns the counters.
func (f *Fleet) Stats() Stats {
	c := &f.stats
	return Stats{
		Datagrams: c.datagrams.Load(), HTB: c.htb.Load(), PLG: c.plg.Load(), UnknownID: c.unknownID.Load(),
		TooLarge: c.tooLarge.Load(), Inflate: c.inflate.Load(), TooManyFields: c.tooManyFields.Load(),
		Malformed: c.malformed.Load(), BadFields: c.badFields.Load(), BadSignature: c.badSig.Load(),
		Unsigned: c.unsigned.Load(), Stale: c.stale.Load(), ACKs: c.acks.Load(), ACKsLimited: c.acksLimited.Load(), Commands: c.cmds.Load(),
		SendErrors: c.sendErrors.Load(), HostsRefused: c.hostsRefused.Load(), EngineErrors: c.engineErrors.Load(),
		Registrations: c.registrations.Load(), RegisterRefused: c.registerRefused.Load(),
		Polls: c.polls.Load(), PollErrors: c.pollErrors.Load(),
		DNSUpdates: c.dnsUpdates.Load(), DNSFailures: c.dnsFailures.Load(),
	}
}
