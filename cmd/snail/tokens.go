package main

import (
	"errors"
	"strings"
)

// oneToken picks between --token and --token-file when both are set: the
// one on the command line wins over the one from the environment (as for
// every flag); both on the command line, or both from the environment, is
// an error.
func oneToken(args []string, token, tokenFile *string) error {
	if *token == "" || *tokenFile == "" {
		return nil
	}
	cliToken, cliFile := onCommandLine(args, "token"), onCommandLine(args, "token-file")
	switch {
	case cliToken && !cliFile:
		*tokenFile = ""
	case cliFile && !cliToken:
		*token = ""
	default:
		return errors.New("give one of --token and --token-file")
	}
	return nil
}

// onCommandLine reports whether args set the flag name, as -name,
// --name, -name=v or --name=v, before the first argument that is not a
// flag's.
func onCommandLine(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if n, ok := strings.CutPrefix(a, "-"); ok {
			n = strings.TrimPrefix(n, "-")
			if n, _, _ = strings.Cut(n, "="); n == name {
				return true
			}
		}
	}
	return false
}
