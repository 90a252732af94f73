package config

import "testing"

func TestQuick(t *testing.T) {
	for _, src := range []string{
		"[broker]\nmqtt = \"x\"\nmax_clients = \"3\"\nconnect_timeout = \"3\"\nbogus = 1\n[[publisher]]\nusername = \"a\"\npassword_hash = \"$2a$10$abcdefghijklmnopqrstuuS1bVo7A0nJgkUNCmJw6h7GLSC3gzUXBu\"\ntopics = [\"a/#\"]\n[[publisher]]\nusername = \"a\"\ntopics = [\n\"ok\",\n\"x/#/y\"]\n",
		"[broker]\nmqtt = \n",
		"[tls]\nmode=\"acme\"\n[firewall]\nnew_connections_per_source = \"5/sec\"\n",
	} {
		_, err := Parse("f.toml", []byte(src))
		t.Log(err)
	}
}
