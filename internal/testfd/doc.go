// Package testfd brings a test process to its limit on open files, so
// that tests can show what a server does when accept and open fail with
// EMFILE. It is for tests only, on Linux (Exhaust skips elsewhere).
package testfd
