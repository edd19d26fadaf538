package netlog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
)

// ReadTokens reads a token file: one token per line, spaces around it
// trimmed; blank lines and lines starting with # are skipped. A file keeps
// a token out of command lines, which ps shows to every user, and out of
// URLs, which errors repeat whole. A file with no token is an error.
func ReadTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("token file %s holds no token", path)
	}
	return tokens, nil
}

// ReadToken reads a client's token file: as ReadTokens, holding one token
// (a collector's file may hold several, for a change of token).
func ReadToken(path string) (string, error) {
	tokens, err := ReadTokens(path)
	if err != nil {
		return "", err
	}
	if len(tokens) > 1 {
		return "", fmt.Errorf("token file %s holds %d tokens; a client presents one", path, len(tokens))
	}
	return tokens[0], nil
}
