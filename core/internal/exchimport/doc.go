// Package exchimport turns an Exchange Unified Messaging export (CLIXML from
// Export-Clixml, or the flat CSV set of the export recipe) into an edged
// configuration and a report of what each Exchange object became.
//
// The readers stream: CLIXML is walked token by token with encoding/xml and
// CSV row by row with encoding/csv, so an export of any size is read in one
// pass, and only the few properties the mapping needs are kept per object.
// Input formats, property meanings and the mapping are specified in
// docs/exchange-import.md.
package exchimport
