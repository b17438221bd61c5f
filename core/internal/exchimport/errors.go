package exchimport

import "errors"

var (
	// ErrRefused means an input is in a form the importer will not guess
	// at (Format-List or Format-Table text, a naive Export-Csv, JSON, an
	// unknown CSV); the message says how to export it instead.
	ErrRefused = errors.New("exchimport: input refused")
	// ErrMalformed means an input is CLIXML or CSV but broken.
	ErrMalformed = errors.New("exchimport: malformed input")
)

// Recipe is the export recipe of docs/exchange-import.md §1, given to the
// operator verbatim whenever an input is refused.
const Recipe = `Export the UM configuration from the Exchange Management Shell with:

  $out = "C:\umexport"; New-Item -ItemType Directory -Force $out | Out-Null
  @( Get-UMIPGateway; Get-UMHuntGroup; Get-UMDialPlan; Get-UMMailboxPolicy; Get-UMAutoAttendant
     Get-UMMailbox -ResultSize Unlimited
     Get-ExchangeServer | ? { $_.ServerRole -match 'Mailbox' }      | % { Get-UMService -Identity $_.Name }
     Get-ExchangeServer | ? { $_.ServerRole -match 'ClientAccess' } | % { Get-UMCallRouterSettings -Server $_.Name }
   ) | Export-Clixml -Path "$out\um.clixml" -Depth 3

and import it with:  edged import exchange -o umedge.toml --report report.json C:\umexport\um.clixml
(The flat CSV set of the same recipe, multi-valued columns joined with '|', is accepted too;
see docs/exchange-import.md.)`
