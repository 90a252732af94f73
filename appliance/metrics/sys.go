package metrics

import (
	"strconv"
	"strings"

	"github.com/firehose/firehose/appliance/broker"
)

// The broker_* metrics are the $SYS topics under the names the widely used
// mosquitto exporter gives them, so dashboards built on it keep working
// against /metrics alone: "$SYS/" stripped, then "/", " ", "-" and "."
// replaced by "_" ($SYS/broker/retained messages/count becomes
// broker_retained_messages_count). The exporter types the topics below as
// counters and every other numeric one as a gauge, and so does this.
var sysCounters = map[string]bool{
	"$SYS/broker/bytes/received":            true,
	"$SYS/broker/bytes/sent":                true,
	"$SYS/broker/messages/received":         true,
	"$SYS/broker/messages/sent":             true,
	"$SYS/broker/publish/messages/received": true,
	"$SYS/broker/publish/messages/sent":     true,
	"$SYS/broker/publish/messages/dropped":  true,
}

var sysNamer = strings.NewReplacer("/", "_", " ", "_", "-", "_", ".", "_")

// sysName is the exporter's name for a $SYS topic.
func sysName(topic string) string {
	return sysNamer.Replace(strings.TrimPrefix(topic, "$SYS/"))
}

func sys(values []broker.SysValue, s *sink) {
	for _, v := range values {
		f, err := strconv.ParseFloat(v.Payload, 64)
		if err != nil {
			continue // the version
		}
		if sysCounters[v.Topic] {
			s.counter(sysName(v.Topic), v.Topic, f)
		} else {
			s.gauge(sysName(v.Topic), v.Topic, f)
		}
	}
}
