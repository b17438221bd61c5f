package config

// Appliance configures the box edged runs on when it is the umedge
// appliance: appliance/cmd/init (PID 1) reads it, edged does not.
type Appliance struct {
	Hostname   string   `toml:"hostname"`    // "" = the first label of sip.fqdn
	NTPServers []string `toml:"ntp_servers"` // host names or IP addresses; empty = no time sync
	Firewall   bool     `toml:"firewall"`    // install the host firewall generated from this file
	Watchdog   string   `toml:"watchdog"`    // hardware watchdog device kept alive while healthy; "" = none
}

// Network configures the appliance's interfaces ([network.interfaces.<name>]).
type Network struct {
	DNS        []string             `toml:"dns"`        // resolvers (IP literals), before those DHCP gives
	Interfaces map[string]Interface `toml:"interfaces"` // key = Linux interface name
}

// Interface is one [network.interfaces.<name>]: a physical link, or a VLAN
// on one when Parent is set.
type Interface struct {
	DHCP      bool     `toml:"dhcp"`      // take an IPv4 address, router and DNS by DHCP
	Addresses []string `toml:"addresses"` // static addresses in CIDR form, "192.0.2.10/24"
	Routes    []Route  `toml:"routes"`    // static routes through this interface
	MTU       int      `toml:"mtu"`       // 0 = leave as it is
	Parent    string   `toml:"parent"`    // for a VLAN: the interface it is tagged on
	VLAN      int      `toml:"vlan"`      // for a VLAN: its ID, 1..4094
}

// Route is one static route: To (a prefix, "0.0.0.0/0" for the default)
// through the gateway Via, or on-link when Via is empty.
type Route struct {
	To  string `toml:"to"`
	Via string `toml:"via"`
}

// DefaultWatchdog is the hardware watchdog device the appliance keeps alive.
const DefaultWatchdog = "/dev/watchdog"
