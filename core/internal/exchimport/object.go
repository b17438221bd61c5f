package exchimport

import (
	"fmt"
	"strings"
)

// Kinds of Exchange objects the mapping knows, by the last part of their
// type name (or, for the two server objects, the cmdlet that gets them).
const (
	KindGateway       = "UMIPGateway"
	KindHuntGroup     = "UMHuntGroup"
	KindDialPlan      = "UMDialPlan"
	KindPolicy        = "UMMailboxPolicy"
	KindAutoAttendant = "UMAutoAttendant"
	KindMailbox       = "UMMailbox"
	KindService       = "UMService"
	KindCallRouter    = "UMCallRouterSettings"
)

// kindOfType maps the most-derived type name, stripped of its namespace,
// to a kind. UMServer is what Get-UMService returns and
// SIPFEServerConfiguration what Get-UMCallRouterSettings returns.
var kindOfType = map[string]string{
	"UMIPGateway":              KindGateway,
	"UMHuntGroup":              KindHuntGroup,
	"UMDialPlan":               KindDialPlan,
	"UMMailboxPolicy":          KindPolicy,
	"UMAutoAttendant":          KindAutoAttendant,
	"UMMailbox":                KindMailbox,
	"UMServer":                 KindService,
	"SIPFEServerConfiguration": KindCallRouter,
}

// kindOf returns the kind of an object whose most-derived type name is t,
// after any number of "Deserialized." and "Selected." prefixes, or "" and
// the bare name when the type is none of ours.
func kindOf(t string) (kind, bare string) {
	for {
		if s, ok := strings.CutPrefix(t, "Deserialized."); ok {
			t = s
		} else if s, ok := strings.CutPrefix(t, "Selected."); ok {
			t = s
		} else {
			break
		}
	}
	name := t
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return kindOfType[name], t
}

// Value is one property of an exported object: a scalar as text, or a
// multi-valued property as its items' text.
type Value struct {
	Text   string
	List   []string
	IsList bool
	Nil    bool // <Nil/> in CLIXML; an empty field in CSV reads as ""
}

// Object is one exported Exchange object with the properties the mapping
// reads (every other property is dropped while reading).
type Object struct {
	Kind   string // one of the Kind constants
	Source string // "FILE#N" (N-th object) or "FILE:LINE"
	Props  map[string]Value
	Notes  []Warning // what the reader noticed about single properties
}

// Str returns the text of property name ("" when absent or nil).
func (o *Object) Str(name string) string { return strings.TrimSpace(o.Props[name].Text) }

// Has reports whether the object carries property name at all.
func (o *Object) Has(name string) bool { _, ok := o.Props[name]; return ok }

// List returns the items of multi-valued property name. A scalar holding
// text counts as a one-item list.
func (o *Object) List(name string) []string {
	v := o.Props[name]
	if v.IsList {
		return v.List
	}
	if t := strings.TrimSpace(v.Text); t != "" {
		return []string{t}
	}
	return nil
}

// Warning is one thing the operator must know about one property of one
// object, named by its property path such as
// UMMailbox[bob@example.net].EmailAddresses[2].
type Warning struct {
	Path    string `json:"property"`
	Message string `json:"message"`
}

func (w Warning) String() string {
	if w.Path == "" {
		return w.Message
	}
	return fmt.Sprintf("%s: %s", w.Path, w.Message)
}

// wanted lists, per kind, the properties the mapping reads; the readers
// keep only these.
var wanted = map[string]map[string]bool{}

func init() {
	for kind, props := range map[string][]string{
		KindGateway: {"Name", "Identity", "Address", "Port", "Status", "OutcallsAllowed", "MessageWaitingIndicatorAllowed",
			"IPAddressFamily", "DelayedSourcePartyInfoEnabled", "Simulator", "GlobalCallRoutingScheme"},
		KindHuntGroup:     {"Name", "Identity", "UMIPGateway", "PilotIdentifier", "UMDialPlan"},
		KindDialPlan:      dialPlanProps,
		KindPolicy:        policyProps,
		KindAutoAttendant: append([]string{"Identity"}, autoAttendantProps...),
		KindMailbox: {"DisplayName", "SamAccountName", "PrimarySmtpAddress", "UMEnabled", "UMDialPlan", "UMMailboxPolicy",
			"Extensions", "SIPResourceIdentifier", "PhoneNumber", "EmailAddresses", "PinlessAccessToVoiceMailEnabled",
			"AnonymousCallersCanLeaveMessages", "CallAnsweringAudioCodec", "Identity"},
		KindService:    {"Name", "Identity", "MaxCallsAllowed", "UMStartupMode", "IPAddressFamily", "DialPlans", "UMCertificateThumbprint", "SIPAccessService"},
		KindCallRouter: {"Name", "Identity", "SipTcpListeningPort", "SipTlsListeningPort", "UMStartupMode", "IPAddressFamily", "DialPlans", "UMCertificateThumbprint"},
	} {
		wanted[kind] = make(map[string]bool, len(props))
		for _, p := range props {
			wanted[kind][p] = true
		}
	}
}

// The dial plan, policy and auto attendant properties kept: the columns of
// the CSV set, so that both forms of one export give the same config.
var (
	dialPlanProps = []string{"Name", "Identity", "URIType", "NumberOfDigitsInExtension", "VoIPSecurity", "PhoneContext",
		"CountryOrRegionCode", "OutsideLineAccessCode", "InternationalAccessCode", "NationalNumberPrefix",
		"AccessTelephoneNumbers", "PilotIdentifierList", "ConfiguredInCountryOrRegionGroups", "ConfiguredInternationalGroups",
		"AllowedInCountryOrRegionGroups", "AllowedInternationalGroups", "OperatorExtension", "MaxCallDuration",
		"MaxRecordingDuration", "RecordingIdleTimeout", "InputFailuresBeforeDisconnect", "LogonFailuresBeforeDisconnect",
		"AudioCodec", "DefaultLanguage", "CallAnsweringRulesEnabled", "AutomaticSpeechRecognitionEnabled", "FaxEnabled",
		"WelcomeGreetingEnabled", "WelcomeGreetingFilename", "InfoAnnouncementFilename"}
	policyProps = []string{"Name", "Identity", "UMDialPlan", "MinPINLength", "PINLifetime", "PINHistoryCount", "AllowCommonPatterns",
		"LogonFailuresBeforePINReset", "MaxLogonAttempts", "AllowPinlessVoiceMailAccess", "AllowMissedCallNotifications",
		"AllowMessageWaitingIndicator", "AllowPlayOnPhone", "AllowSubscriberAccess", "AllowCallAnsweringRules",
		"AllowTUIAccessToEmail", "AllowTUIAccessToCalendar", "AllowTUIAccessToDirectory", "AllowDialPlanSubscribers",
		"AllowExtensions", "AllowedInCountryOrRegionGroups", "AllowedInternationalGroups", "MaxGreetingDuration",
		"VoiceMailText", "UMEnabledText", "ResetPINText", "ProtectUnauthenticatedVoiceMail", "ProtectAuthenticatedVoiceMail",
		"AllowFax", "FaxServerURI"}
	autoAttendantProps = []string{"Name", "UMDialPlan", "Status", "SpeechEnabled", "PilotIdentifierList", "OperatorExtension",
		"TimeZone", "Language", "BusinessName", "BusinessHoursSchedule", "HolidaySchedule", "BusinessHoursWelcomeGreetingEnabled",
		"BusinessHoursWelcomeGreetingFilename", "BusinessHoursMainMenuCustomPromptEnabled", "BusinessHoursMainMenuCustomPromptFilename",
		"BusinessHoursKeyMappingEnabled", "BusinessHoursKeyMapping", "BusinessHoursTransferToOperatorEnabled",
		"AfterHoursWelcomeGreetingEnabled", "AfterHoursWelcomeGreetingFilename", "AfterHoursKeyMappingEnabled",
		"AfterHoursKeyMapping", "AfterHoursTransferToOperatorEnabled", "NameLookupEnabled", "StarOutToDialPlanEnabled",
		"DTMFFallbackAutoAttendant"}
)

// multiValued lists, per kind, the properties that are collections: in
// CSV they are '|'-joined, and a .NET type name there means the export
// was not flattened.
var multiValued = map[string]map[string]bool{
	KindGateway:    {"HuntGroups": true},
	KindDialPlan:   {"AccessTelephoneNumbers": true, "PilotIdentifierList": true, "ConfiguredInCountryOrRegionGroups": true, "ConfiguredInternationalGroups": true, "AllowedInCountryOrRegionGroups": true, "AllowedInternationalGroups": true, "UMIPGateway": true, "UMServers": true},
	KindPolicy:     {"AllowedInCountryOrRegionGroups": true, "AllowedInternationalGroups": true},
	KindMailbox:    {"Extensions": true, "EmailAddresses": true},
	KindService:    {"DialPlans": true},
	KindCallRouter: {"DialPlans": true},
	KindAutoAttendant: {"PilotIdentifierList": true, "BusinessHoursSchedule": true, "HolidaySchedule": true,
		"BusinessHoursKeyMapping": true, "AfterHoursKeyMapping": true},
}
