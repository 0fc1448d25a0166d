package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cascade-sfu/cascade/sim"
)

// runSim runs `cascade sim`: a scenario through the cluster simulator (package sim), its
// summary on stdout, and the JSON and HTML reports where asked. The exit code is 1 when a
// check of the "Done means" fails (so CI can run it), 2 for a bad scenario.
func runSim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cascade sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	scenario := fs.String("scenario", "", "scenario YAML file, or the name of a committed one ("+strings.Join(sim.ListScenarios(), ", ")+")")
	jsonOut := fs.String("json", "", "write the JSON report to this file")
	htmlOut := fs.String("html", "", "write the HTML report (plots) to this file")
	synopsis := "cascade sim --scenario FILE [--json FILE] [--html FILE]"
	if err := fs.Parse(args); err != nil {
		return usageError(err, stderr, fs, synopsis)
	}
	if *scenario == "" || fs.NArg() > 0 {
		return usageError(fmt.Errorf("--scenario is required and takes no arguments"), stderr, fs, synopsis)
	}
	sc, err := sim.LoadScenario(*scenario)
	if err != nil {
		fmt.Fprintf(stderr, "cascade sim: %v\n", err)
		return exitUsage
	}
	s, err := sim.New(sc)
	if err != nil {
		fmt.Fprintf(stderr, "cascade sim: %v\n", err)
		return exitError
	}
	r := s.Run()
	r.WriteText(stdout)
	if *jsonOut != "" {
		if err := r.WriteJSON(*jsonOut); err != nil {
			fmt.Fprintf(stderr, "cascade sim: %v\n", err)
			return exitError
		}
	}
	if *htmlOut != "" {
		if err := r.WriteHTML(*htmlOut); err != nil {
			fmt.Fprintf(stderr, "cascade sim: %v\n", err)
			return exitError
		}
	}
	if !r.OK() {
		return exitError
	}
	return exitOK
}
