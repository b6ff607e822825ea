// Package esxisim imitates the ESXi tools casecap talks to, for the lab's
// ESXi-flavoured hosts: pktcap-uw, net-stats, esxcli, vsish, vmware and
// uname. It is test-only code. Each lab ESXi host maps its switchports,
// uplinks and vmks to real interfaces in its network namespace, so that
// pktcap-uw here captures real packets; and it is strict, as a real host
// is: unknown options, unknown or misplaced capture points and malformed
// filters are refused with an error and a non-zero exit.
//
// What it imitates of pktcap-uw (docs/esxi.md): pcap unless --ng/-P,
// the receive side only unless told otherwise, --capture with several
// points, --dir/--stage, -s, -c, the flow filters and --rcf, a clean file
// and a "Dumped N packet to file F, dropped M packets." summary on SIGINT
// or SIGTERM. Options it does not imitate (rotation, trace, vsocket ports)
// fail loudly rather than being ignored.
package esxisim
