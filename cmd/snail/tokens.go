package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// readTokens reads a token file (--token-file): one token per line, spaces
// around it trimmed; blank lines and lines starting with # are skipped. A
// file keeps a token out of the command line, which ps shows to every
// user, and out of the environment, which a crash report may show; and
// it can be changed without a restart (the collector reads it again on
// SIGHUP).
func readTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	var tokens []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for sc.Scan() {
		if t := string(bytes.TrimSpace(sc.Bytes())); t != "" && t[0] != '#' {
			tokens = append(tokens, t)
		}
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("--token-file %s holds no token", path)
	}
	return tokens, nil
}

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
