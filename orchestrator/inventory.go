package orchestrator

import "context"

// inventoryHost resolves each host's captures against what the host has (on
// ESXi: its ports), before anything is uploaded: see each driver's resolve.
func (o *Orchestrator) inventoryHost(ctx context.Context, h *hostRun) error {
	return h.drv.resolve(ctx, o, h)
}
