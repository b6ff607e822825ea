package plans

import "slices"

// Platform says where a capture point exists.
type Platform string

// Platforms.
const (
	PlatformESXi  Platform = "esxi"
	PlatformLinux Platform = "linux"
)

// Point is one capture point casecap knows.
type Point struct {
	Name     string       `json:"name"`
	Platform Platform     `json:"platform"`
	Targets  []TargetKind `json:"targets"` // target kinds it fits; TargetNone: standalone
	Meaning  string       `json:"meaning"`
}

var (
	vnicTargets   = []TargetKind{TargetSwitchport, TargetVM}
	portTargets   = []TargetKind{TargetSwitchport, TargetVM, TargetVmk, TargetUplink}
	uplinkTargets = []TargetKind{TargetUplink}
	standalone    = []TargetKind{TargetNone}
)

// Catalogue is every capture point casecap accepts. ESXi names are pktcap-uw's
// own (`pktcap-uw -A`), including its spelling "EtherswitchDispath".
// "Dynamic" is left out: it needs a kernel function name (-f), which is for
// VMware support sessions only.
var Catalogue = []Point{
	{"UplinkRcv", PlatformESXi, uplinkTargets, "the function that receives packets from the physical adapter"},
	{"UplinkSnd", PlatformESXi, uplinkTargets, "the function that sends packets to the physical adapter"},
	{"UplinkRcvKernel", PlatformESXi, uplinkTargets, "uplink receive, in the kernel, before the virtual switch sees the packet"},
	{"UplinkSndKernel", PlatformESXi, uplinkTargets, "uplink send, in the kernel, as the packet leaves for the physical adapter"},
	{"PortInput", PlatformESXi, portTargets, "a port hands packets to the virtual switch (from a vNIC, vmk or uplink)"},
	{"PortOutput", PlatformESXi, portTargets, "the virtual switch hands packets to a port (towards a vNIC, vmk or uplink)"},
	{"VnicRx", PlatformESXi, vnicTargets, "the VM NIC backend receives packets from the virtual switch (towards the guest)"},
	{"VnicTx", PlatformESXi, vnicTargets, "the VM NIC backend sends packets from the guest to the virtual switch"},
	{"Vmxnet3Rx", PlatformESXi, vnicTargets, "VnicRx under its ESXi 6.x name"},
	{"Vmxnet3Tx", PlatformESXi, vnicTargets, "VnicTx under its ESXi 6.x name"},
	{"IOChain", PlatformESXi, portTargets, "the port's IOChain (filters and features applied on the port)"},
	{"EtherswitchDispath", PlatformESXi, append(slices.Clone(portTargets), TargetNone), "the virtual switch receives packets to dispatch (pktcap-uw's own spelling)"},
	{"EtherswitchOutput", PlatformESXi, append(slices.Clone(portTargets), TargetNone), "the virtual switch sends packets out"},
	{"TcpipDispatch", PlatformESXi, []TargetKind{TargetVmk, TargetNone}, "the VMkernel TCP/IP stack dispatches packets"},
	{"TcpipRx", PlatformESXi, []TargetKind{TargetVmk, TargetNone}, "the VMkernel TCP/IP stack receives packets"},
	{"TcpipTx", PlatformESXi, []TargetKind{TargetVmk, TargetNone}, "the VMkernel TCP/IP stack sends packets"},
	{"PreDVFilter", PlatformESXi, []TargetKind{TargetDVFilter}, "before a DVFilter intercepts a packet"},
	{"PostDVFilter", PlatformESXi, []TargetKind{TargetDVFilter}, "after a DVFilter intercepts a packet"},
	{"Drop", PlatformESXi, standalone, "dropped packets, with the place where they were dropped"},
	{"PktFree", PlatformESXi, standalone, "packets just before they are freed"},
	{"VdrRxLeaf", PlatformESXi, standalone, "the distributed router's leaf receive IOChain (NSX)"},
	{"VdrTxLeaf", PlatformESXi, standalone, "the distributed router's leaf send IOChain (NSX)"},
	{"VdrRxTerminal", PlatformESXi, standalone, "the distributed router's terminal receive IOChain (NSX)"},
	{"VdrTxTerminal", PlatformESXi, standalone, "the distributed router's terminal send IOChain (NSX)"},
	{"PreOverlayInput", PlatformESXi, standalone, "before overlay (Geneve/VXLAN) processing of incoming packets (NSX)"},
	{"PostOverlayInput", PlatformESXi, standalone, "after overlay processing of incoming packets (NSX)"},
	{"PreOverlayOutput", PlatformESXi, standalone, "before overlay encapsulation of outgoing packets (NSX)"},
	{"PostOverlayOutput", PlatformESXi, standalone, "after overlay encapsulation of outgoing packets (NSX)"},
	{"EnsPortReaderRx", PlatformESXi, []TargetKind{TargetSwitchport, TargetVM, TargetUplink}, "enhanced datapath (ENS) port reader, receive"},
	{"EnsPortWriterTx", PlatformESXi, []TargetKind{TargetSwitchport, TargetVM, TargetUplink}, "enhanced datapath (ENS) port writer, send"},
	{"EnsPortWriterQueue", PlatformESXi, []TargetKind{TargetSwitchport, TargetVM, TargetUplink}, "enhanced datapath (ENS) port writer queue"},
	{"EnsPortWriterFlush", PlatformESXi, []TargetKind{TargetSwitchport, TargetVM, TargetUplink}, "enhanced datapath (ENS) port writer flush"},
	{"Rx", PlatformLinux, []TargetKind{TargetInterface}, "packets the interface receives (Linux: direction rx)"},
	{"Tx", PlatformLinux, []TargetKind{TargetInterface}, "packets the interface sends (Linux: direction tx)"},
}

// LookupPoint finds a point by its exact name.
func LookupPoint(name string) (Point, bool) {
	for _, p := range Catalogue {
		if p.Name == name {
			return p, true
		}
	}
	return Point{}, false
}

// pointNames lists the names of the points of one platform.
func pointNames(pl Platform) []string {
	var names []string
	for _, p := range Catalogue {
		if p.Platform == pl {
			names = append(names, p.Name)
		}
	}
	return names
}

// defaultPoints are used when an ESXi capture names neither points nor dir:
// both directions at the target's natural place (the KB's choices for vNICs
// and uplinks). pktcap-uw alone would capture only the receive side.
var defaultPoints = map[TargetKind][]string{
	TargetSwitchport: {"PortInput", "PortOutput"},
	TargetVM:         {"VnicTx", "VnicRx"},
	TargetUplink:     {"UplinkSndKernel", "UplinkRcvKernel"},
	TargetVmk:        {"PortInput", "PortOutput"},
}
