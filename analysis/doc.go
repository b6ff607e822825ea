// Package analysis is the last step of casecap's data flow (plan ->
// captures -> per-host actions -> results -> case folder -> analysis): what
// it makes of a case folder that collect left. casedir reads the folder;
// merge writes its captures as one pcapng on casecap's clock.
package analysis
