package metrics

import (
	"runtime"
	"strconv"
	"strings"

	"github.com/firehose/firehose/appliance/apitype"
)

func appliance(st *apitype.Status, s *sink) {
	s.gauge("firehose_build_info", "The running firehose: its version and Go version as labels; always 1.", 1,
		"version", st.Version, "goversion", runtime.Version())
	s.gauge("firehose_start_time_seconds", "When the daemon started, as a Unix timestamp.", seconds(st.Started))
	s.gauge("firehose_degraded", "1 when the appliance is degraded (firehosectl status says why), else 0.", boolean(st.State != apitype.StateOK))
	s.gauge("firehose_problems", "How many reasons make the appliance degraded now.", float64(len(st.Reasons)))
	s.gauge("firehose_publishers", "Publisher accounts in the running config.", float64(len(st.Publishers)))
}

func messages(st *apitype.Status, s *sink) {
	s.gauge("firehose_clients", "MQTT clients connected now.", float64(st.Clients))
	s.gauge("firehose_subscriptions", "Subscriptions held now.", float64(st.Subscriptions))
	s.counter("firehose_messages_received_total", "PUBLISH messages the bus accepted, from publishers and the Gerrit bridge; refused publishes and $SYS are not counted.", float64(st.Messages.ReceivedTotal))
	s.counter("firehose_deliveries_total", "Messages written to subscribers.", float64(st.Messages.SentTotal))
	for _, reason := range sortedKeys(st.Messages.Drops) {
		s.counter("firehose_deliveries_dropped_total", "Deliveries lost, by reason: slow_subscriber (its queue was full), inflight (a QoS 1/2 message that did not fit or expired).",
			float64(st.Messages.Drops[reason]), "reason", reason)
	}
}

func refusals(st *apitype.Status, s *sink) {
	for _, kind := range sortedKeys(st.Refusals) {
		s.counter("firehose_refusals_total", "What the broker turned away, by kind: auth (bad credentials), acl (a publish outside the client's rights), max_clients, and each hardening limit.",
			float64(st.Refusals[kind]), "kind", kind)
	}
}

func listeners(st *apitype.Status, s *sink) {
	for _, l := range st.Listeners {
		s.gauge("firehose_listener_clients", "MQTT clients connected now, by listener (mqtt, ws, mqtts, wss).", float64(l.Clients), "listener", l.Name)
		s.gauge("firehose_listener_info", "Each listener served: its address, where its socket came from (systemd or bound) and whether it is TLS; always 1.", 1,
			"listener", l.Name, "address", l.Address, "source", l.Source, "tls", strconv.FormatBool(l.TLS))
	}
}

// gerritStates are every state a source can be in, so that each has a
// series (0 or 1) and a graph of states needs no gaps filled.
var gerritStates = []string{apitype.GerritConnecting, apitype.GerritReplaying, apitype.GerritStreaming, apitype.GerritBackingOff, apitype.GerritStopped}

func gerritSources(st *apitype.Status, s *sink) {
	for _, g := range st.Gerrit {
		src := g.Name
		s.gauge("firehose_gerrit_streaming", "1 while a Gerrit source is streaming events, else 0 (connecting, replaying, backing off, stopped).", boolean(g.State == apitype.GerritStreaming), "source", src)
		for _, state := range gerritStates {
			s.gauge("firehose_gerrit_state", "A Gerrit source's state: 1 for the current one, 0 for the others.", boolean(g.State == state),
				"source", src, "state", strings.ReplaceAll(state, " ", "_"))
		}
		if g.LastEvent != nil {
			s.gauge("firehose_gerrit_last_event_timestamp_seconds", "When the last event from a Gerrit source arrived (this host's clock), as a Unix timestamp.", seconds(*g.LastEvent), "source", src)
			if g.LastEventCreated != nil {
				s.gauge("firehose_gerrit_lag_seconds", "How long after Gerrit created it (its eventCreatedOn, one-second resolution, Gerrit's clock) the last event arrived here.",
					g.LastEvent.Sub(*g.LastEventCreated).Seconds(), "source", src)
			}
		}
		for _, c := range []struct {
			name, help string
			v          int64
		}{
			{"firehose_gerrit_events_published_total", "Events from a Gerrit source handed to the broker, replayed ones included.", g.EventsPublished},
			{"firehose_gerrit_events_replayed_total", "Of the events published, those recovered from the events-log after an outage.", g.Replayed},
			{"firehose_gerrit_duplicates_skipped_total", "Events both the replay and the stream delivered, published once.", g.DuplicatesSkipped},
			{"firehose_gerrit_parse_errors_total", "Lines from a Gerrit source that are not a JSON object.", g.ParseErrors},
			{"firehose_gerrit_lines_too_long_total", "Lines from a Gerrit source over the size limit, skipped.", g.LinesTooLong},
			{"firehose_gerrit_reconnects_total", "Times the SSH stream of a Gerrit source was connected again.", g.Reconnects},
			{"firehose_gerrit_replays_total", "Events-log replays done after an outage.", g.Replays},
			{"firehose_gerrit_replay_failures_total", "Replays given up: a gap of events was lost.", g.ReplayFailures},
			{"firehose_gerrit_queue_overflow_total", "Events dropped because a Gerrit source's queue to the broker was full.", g.QueueOverflow},
			{"firehose_gerrit_publish_errors_total", "Failed publishes of Gerrit events to the broker (retried).", g.PublishErrors},
		} {
			s.counter(c.name, c.help, float64(c.v), "source", src)
		}
		s.gauge("firehose_gerrit_queue_length", "Events waiting in a Gerrit source's queue to the broker.", float64(g.QueueLength), "source", src)
	}
}

func tlsCertificates(st *apitype.Status, s *sink) {
	t := st.TLS
	if t == nil {
		return
	}
	s.gauge("firehose_tls_mode", "The TLS mode (off, files, acme) as a label; always 1.", 1, "mode", t.Mode)
	for _, c := range t.Certificates {
		s.gauge("firehose_tls_certificate_expiry_timestamp_seconds", "When a served certificate expires (its NotAfter), as a Unix timestamp.", seconds(c.NotAfter),
			"names", strings.Join(c.Names, ","), "issuer", c.Issuer)
	}
	if t.Mode == "acme" {
		s.gauge("firehose_tls_acme_pending_domains", "ACME domains that have no certificate yet.", float64(len(t.Pending)))
	}
	if e := t.LastACMEError; e != nil {
		s.gauge("firehose_tls_acme_last_error_timestamp_seconds", "When obtaining or renewing a certificate last failed, as a Unix timestamp.", seconds(e.Time))
	}
}

func firewall(st *apitype.Status, s *sink) {
	f := st.Firewall
	if f == nil {
		return
	}
	s.gauge("firehose_firewall_enabled", "1 when [firewall] enabled is true.", boolean(f.Enabled))
	s.gauge("firehose_firewall_in_place", "1 when the kernel held exactly the appliance's table at the last apply or check.", boolean(f.InPlace))
	s.gauge("firehose_firewall_error", "1 when the last apply, removal or check of the table failed.", boolean(f.LastError != ""))
	s.counter("firehose_firewall_reapplied_total", "Times the table was found removed or altered (flush ruleset) and put back.", float64(f.Reapplied))
	if !f.LastApplied.IsZero() {
		s.gauge("firehose_firewall_last_applied_timestamp_seconds", "When the table was last written to the kernel, as a Unix timestamp.", seconds(f.LastApplied))
	}
}

func reloads(st *apitype.Status, s *sink) {
	r := st.LastReload
	if r == nil {
		return
	}
	s.gauge("firehose_last_reload_timestamp_seconds", "When the last reload was tried, as a Unix timestamp.", seconds(r.Time))
	s.gauge("firehose_last_reload_success", "1 when the last reload was applied, 0 when it was refused and the previous config still runs.", boolean(r.OK))
}
