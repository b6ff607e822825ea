package orchestrator

// Phase names a step of a command, as reported with a host's failure.
type Phase string

// The phases, in the order a run takes them (see doc.go).
const (
	phaseConnect   Phase = "connect"
	phasePreflight Phase = "preflight"
	phaseClaim     Phase = "claim"
	phaseInventory Phase = "inventory"
	phaseDeploy    Phase = "deploy"
	phaseCheck     Phase = "check"
	phaseArm       Phase = "arm"
	phaseBegin     Phase = "begin"
	phaseWatch     Phase = "watch"
	phaseStop      Phase = "stop"
	phaseCollect   Phase = "collect"
	phaseAttach    Phase = "attach"
	phaseStatus    Phase = "status"
	phaseTargets   Phase = "targets"
)
