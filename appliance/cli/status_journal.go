package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// printJournal shows the journal's span, size and health.
func printJournal(w io.Writer, j *apitype.JournalStatus, clustered bool) {
	state := "writing"
	switch {
	case !j.Writing && clustered:
		state = "NOT WRITING (publishes here are refused: see last error)"
	case !j.Writing:
		state = "NOT WRITING (messages go out live only)"
	}
	fmt.Fprintf(w, "\njournal:\t%s\n", state)
	span := "empty"
	if j.Messages > 0 {
		span = fmt.Sprintf("%d to %d", j.FirstSeq, j.LastSeq)
		if j.FirstTime != nil && j.LastTime != nil {
			span += fmt.Sprintf(" (%s to %s, %s)", j.FirstTime.Format(time.RFC3339), j.LastTime.Format(time.RFC3339),
				j.LastTime.Sub(*j.FirstTime).Round(time.Second))
		}
	}
	fmt.Fprintf(w, "  sequence:\t%s\n", span)
	fmt.Fprintf(w, "  size:\t%d messages, %s\n", j.Messages, humanBytes(j.Bytes))
	fmt.Fprintf(w, "  retained:\t%d topics\n", j.Retained)
	fmt.Fprintf(w, "  rate:\t%.1f/min\n", j.EventsPerMinute)
	if j.FailingSince != nil {
		fmt.Fprintf(w, "  failing since:\t%s\n", j.FailingSince.Format(time.RFC3339))
	}
	if j.LastError != "" {
		fmt.Fprintf(w, "  last error:\t%s\n", strings.ReplaceAll(j.LastError, "\n", "; "))
	}
	if j.NotJournaled > 0 || j.Gaps > 0 {
		fmt.Fprintf(w, "  not journaled:\t%d messages, %d gap markers\n", j.NotJournaled, j.Gaps)
	}
	if g := j.LastGap; g != nil {
		fmt.Fprintf(w, "  last gap:\tseq %d: %d messages lost %s to %s\n", g.Seq, g.Lost, g.From.Format(time.RFC3339), g.Until.Format(time.RFC3339))
	}
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
