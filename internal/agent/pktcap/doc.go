// Package pktcap is the agent's capture engine on ESXi: one pktcap-uw
// process per capture, started at the capture's instant and stopped at its
// end (SIGINT, then SIGTERM, then SIGKILL after a grace, always by the PID
// the agent started, never by name), its file counted and hashed once it is
// closed. It has the same shape as package capture (Begin, RequestStop,
// Status, Run), so the agent runs both the same way.
package pktcap
