package orchestrator

import (
	"bytes"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/internal/agentproto"
)

// writeTriggerPacket writes the packet that fired a packet rule as a
// pcapng file of its own, stamped on its host's clock like the capture
// that saw it (whose name the interface takes).
func writeTriggerPacket(path string, p *agentproto.TriggerPacket) error {
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{
		Name: p.Capture, Comment: "the packet that fired the trigger", LinkType: layers.LinkType(p.LinkType),
		SnapLength: 0, TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "casecap", Comment: "casecap trigger packet"}})
	if err != nil {
		return err
	}
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: max(p.Length, len(p.Data))}
	if err := w.WritePacket(ci, p.Data); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return writeFileAtomic(path, b.Bytes())
}
