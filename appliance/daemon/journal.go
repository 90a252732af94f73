package daemon

import (
	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/events"
	"github.com/firehose/firehose/appliance/journal"
)

// openJournal opens the journal when the config enables it, routes the
// broker's publishes through it, and starts its fan-out into the broker
// (retained messages first). It returns the public HTTP API, which serves
// only its summary without a journal.
func (d *Daemon) openJournal(cfg *config.Config) (*events.API, error) {
	if !cfg.Journal.Enabled {
		return events.New(nil, d.broker, d.log.With("component", "events")), nil
	}
	j, err := journal.Open(journal.ConfigFrom(cfg), d.log.With("component", "journal"))
	if err != nil {
		return nil, err
	}
	d.journal = j
	d.parts = append(d.parts, journalPart{j})
	if err := d.broker.UseJournal(j); err != nil {
		return nil, err
	}
	if err := j.Start(d.broker.Deliver); err != nil {
		return nil, err
	}
	return events.New(j, d.broker, d.log.With("component", "events")), nil
}
