package hops

import "time"

// Report is what analyze found (its JSON is `casecap analyze --json`).
type Report struct {
	Hops  []Hop      `json:"hops"`
	Flows []FlowLoss `json:"flows"` // those that lost most, at most MaxFlows
	// Window is the time the hops' counts cover (casecap's clock).
	Window *Window `json:"window,omitempty"`
	// Points are the capture points read, by name; Paths the ways the
	// packets took through them, found from the data.
	Points []string `json:"points"`
	Paths  []Path   `json:"paths"`
	// CaptureDrops are, by capture, the packets it lost itself (its
	// buffer was full): a hop to it may show them as loss.
	CaptureDrops map[string]uint64 `json:"capture_drops,omitempty"`
	Frames       uint64            `json:"frames"`     // frames read
	Packets      uint64            `json:"ip_packets"` // of those, IP packets
}

// Path is a way packets took: the capture points in the order they saw
// them, and how many packets (first seen inside the case) took it.
type Path struct {
	Points  []string `json:"points"`
	Packets uint64   `json:"packets"`
}

// Window is a span of casecap's clock.
type Window struct {
	Start time.Time `json:"start"`
	Stop  time.Time `json:"stop"`
}

// Hop is the way from one capture point to the next on packets' paths.
type Hop struct {
	From string `json:"from"` // a capture's name: its file without .pcapng
	To   string `json:"to"`
	// Packets reached From inside the time both points' windows cover
	// (less those still in flight at the end); Lost of them never
	// reached To.
	Packets    uint64  `json:"packets"`
	Lost       uint64  `json:"lost"`
	Loss       float64 `json:"loss"`
	Duplicates uint64  `json:"duplicates"` // extra copies seen at To
	Reordered  uint64  `json:"reordered"`  // reached To after a packet that reached From later
	// Latency from From to To of the packets that made it; nil if none.
	Latency *Latency `json:"latency_ms,omitempty"`
	// UncertaintyMs bounds the latency's error from the two hosts'
	// clocks (0 on one host).
	UncertaintyMs float64  `json:"uncertainty_ms"`
	PerSecond     []Second `json:"per_second,omitempty"`
}

// Latency is a hop's latency, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Second is a hop's count in one second (by when packets reached From).
type Second struct {
	At      time.Time `json:"at"`
	Packets uint64    `json:"packets"`
	Lost    uint64    `json:"lost"`
}

// FlowLoss is one flow's loss on one hop.
type FlowLoss struct {
	Flow    string `json:"flow"` // "udp 198.18.0.11:40000 > 198.18.0.12:9999"
	From    string `json:"from"`
	To      string `json:"to"`
	Packets uint64 `json:"packets"`
	Lost    uint64 `json:"lost"`
}
