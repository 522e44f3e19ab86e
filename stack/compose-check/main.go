// Validates docker-compose.yml with the Compose specification's own loader (schema, references,
// interpolation), since no container engine runs where the tests do. Profiles come from
// COMPOSE_PROFILES; with --json it prints the loaded project (services, resolved environment).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	args := os.Args[1:]
	asJSON := len(args) == 2 && args[0] == "--json"
	if asJSON {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [--json] <docker-compose.yml>")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(args, cli.WithOsEnv, cli.WithDefaultProfiles(), cli.WithName("anc-credential-service"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "invalid:", err)
		os.Exit(1)
	}
	if asJSON {
		out, err := json.Marshal(project)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(string(out))
		return
	}
	fmt.Printf("valid: %d services\n", len(project.Services))
}
