// Package analysis is the last step of casecap's data flow (plan ->
// captures -> per-host actions -> results -> case folder -> analysis): what
// it makes of a case folder that collect left. casedir reads the folder;
// merge writes its captures as one pcapng on casecap's clock; packetkey
// names each frame by what does not change on the way; timeline reads the
// captures as one stream of named sightings in time order; hops finds
// each packet at every point and says, hop by hop, what was lost and how
// long it took.
package analysis
