// Package archtest holds the architecture test: it enforces the import
// rules of DESIGN.md §3 that Go's internal rule does not.
package archtest
