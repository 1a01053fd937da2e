"""Secret config lines found by meaning, per platform: every secret-bearing command in a
corpus, each line also in upper case, with runs of blanks and tabs, abbreviated, and inside
other output (a diff, a prompt's echo, `show archive log config all`, a logged command, a
JSON string); ordinary lines around them left whole."""

from __future__ import annotations

import json
import random
import re

import pytest

from runner.inventory import platforms
from runner.inventory.secretlines import LazyRule, RuleError, compile_rule
from runner.redact import MASK, MASKED_LINES, Redactor

# (line, the secret in it); S marks values that must never survive.
IOS = [
    ("enable secret 9 $9$S-enable9", "$9$S-enable9"),
    ("enable password 7 S-enable7", "S-enable7"),
    ("enable secret level 5 5 S-level5", "S-level5"),
    ("username ops privilege 15 secret 9 $9$S-user9", "$9$S-user9"),
    ("username ops secret 0 S-user0 privilege 15", "S-user0"),
    ("username ops view netops password 7 S-view7", "S-view7"),
    ("username ops password S-plain", "S-plain"),
    ("line vty 0 4\n login\n password 7 S-vty7", "S-vty7"),
    ("snmp-server community S-comm RO 10", "S-comm"),
    ("snmp-server community S-commrw RW", "S-commrw"),
    ("snmp-server host 192.0.2.9 version 2c S-trapcomm udp-port 162", "S-trapcomm"),
    ("snmp-server host 192.0.2.9 vrf MGMT informs version 2c S-infcomm", "S-infcomm"),
    ("snmp-server host 192.0.2.9 S-v1comm", "S-v1comm"),
    ("snmp-server user mon grp v3 auth sha S-authpw priv aes 128 S-privpw", "S-authpw"),
    ("snmp-server user mon grp v3 auth sha S-authpw2 priv aes 128 S-privpw2", "S-privpw2"),
    ("snmp-server user mon grp v3 auth md5 S-md5pw priv des S-despw", "S-despw"),
    ("tacacs-server host 192.0.2.10 key 7 S-tacacs7", "S-tacacs7"),
    ("tacacs-server key S-tacacsglobal", "S-tacacsglobal"),
    ("radius-server host 192.0.2.11 auth-port 1645 acct-port 1646 key S-radius", "S-radius"),
    ("tacacs server TAC1\n address ipv4 192.0.2.10\n key 7 S-tacblock", "S-tacblock"),
    ("radius server RAD1\n key S-radblock", "S-radblock"),
    ("aaa group server tacacs+ G\n server-private 192.0.2.12 key 7 S-private", "S-private"),
    ("aaa server radius dynamic-author\n client 192.0.2.13 server-key 7 S-serverkey",
     "S-serverkey"),
    ("interface Gi0/1\n ip ospf authentication-key 7 S-ospfkey", "S-ospfkey"),
    ("interface Gi0/1\n ip ospf message-digest-key 1 md5 7 S-ospfmd5", "S-ospfmd5"),
    ("router ospf 1\n area 0 virtual-link 10.0.0.2 message-digest-key 3 md5 S-vlmd5",
     "S-vlmd5"),
    ("router ospf 1\n area 0 virtual-link 10.0.0.2 authentication-key S-vlkey", "S-vlkey"),
    ("router bgp 65000\n neighbor 192.0.2.7 password 7 S-bgp7", "S-bgp7"),
    ("router bgp 65000\n neighbor PEERS password S-bgpgroup", "S-bgpgroup"),
    ("key chain KC\n key 1\n  key-string 7 S-keystring", "S-keystring"),
    ("interface Gi0/1\n standby 1 authentication md5 key-string 7 S-hsrpmd5", "S-hsrpmd5"),
    ("interface Gi0/1\n standby 1 authentication text S-hsrptext", "S-hsrptext"),
    ("interface Gi0/1\n standby 1 authentication S-hsrpplain", "S-hsrpplain"),
    ("interface Gi0/1\n vrrp 1 authentication text S-vrrptext", "S-vrrptext"),
    ("interface Gi0/1\n glbp 1 authentication md5 key-string S-glbp", "S-glbp"),
    ("router eigrp NAMED\n af-interface default\n  authentication mode hmac-sha-256 7 "
     "S-eigrp", "S-eigrp"),
    ("crypto isakmp key 0 S-isakmp address 192.0.2.20", "S-isakmp"),
    ("crypto keyring KR\n pre-shared-key address 192.0.2.21 key S-keyring", "S-keyring"),
    ("crypto ikev2 profile P\n pre-shared-key local S-ikev2local", "S-ikev2local"),
    ("ntp authentication-key 1 md5 S-ntpkey 7", "S-ntpkey"),
    ("interface Dialer1\n ppp chap password 0 S-chap", "S-chap"),
    ("interface Dialer1\n ppp pap sent-username u password 0 S-pap", "S-pap"),
    ("ip ftp password 7 S-ftp", "S-ftp"),
    ("mpls ldp neighbor 192.0.2.30 password S-ldp", "S-ldp"),
    ("dot11 ssid S\n wpa-psk ascii 0 S-wpa", "S-wpa"),
    ("router isis CORE\n authentication key 7 S-isiskey level-2", "S-isiskey"),
    # NX-OS's hsrp blocks (the rule is shared)
    ("interface Vlan10\n hsrp 10\n  authentication md5 key-string S-nxhsrp", "S-nxhsrp"),
    ("interface Vlan10\n hsrp 10\n  authentication text S-nxhsrptext", "S-nxhsrptext"),
    # netutils' own sanitising examples (netutils.constants._PROVIDED_SANITIZE_FILTERS)
    ("username bob password 5 $1$S-netutils5 role network-admin", "$1$S-netutils5"),
    ("username bob privilege 15 password 0 S-netutils0", "S-netutils0"),
]
# FRR (vtysh), which runner drives as cisco_ios.
FRR = [
    ("password S-frrvty", "S-frrvty"),
    ("enable password S-frrenable", "S-frrenable"),
    ("router bgp 65000\n neighbor 10.0.0.2 password S-frrbgp", "S-frrbgp"),
    ("interface eth1\n ip ospf authentication-key S-frrospf", "S-frrospf"),
    ("interface eth1\n ip ospf message-digest-key 1 md5 S-frrmd5", "S-frrmd5"),
    ("key chain KC\n key 1\n  key-string S-frrkeystring", "S-frrkeystring"),
    ("interface eth1\n isis password clear S-frrisis", "S-frrisis"),
    ("router isis 1\n area-password md5 S-frrarea authenticate snp validate", "S-frrarea"),
    ("router isis 1\n domain-password clear S-frrdomain", "S-frrdomain"),
    ("interface eth1\n ip rip authentication string S-frrrip", "S-frrrip"),
    ("interface eth1\n ipv6 ospf6 authentication key-id 1 hash-algo hmac-sha-256 key "
     "S-frrospf6", "S-frrospf6"),
    ("interface gre1\n ip nhrp authentication S-frrnhrp", "S-frrnhrp"),
    ("mpls ldp\n neighbor 10.0.0.3 password S-frrldp", "S-frrldp"),
]
NXOS = [
    ("username admin password 5 $5$S-nxuser role network-admin", "$5$S-nxuser"),
    ("snmp-server user admin network-admin auth md5 0xS-nxauth priv 0xS-nxpriv "
     "localizedkey", "0xS-nxauth"),
    ("snmp-server user admin network-admin auth sha 0xS-nxauth2 priv aes-128 0xS-nxpriv2 "
     "localizedkey", "0xS-nxpriv2"),
    ("snmp-server community S-nxcomm group network-operator", "S-nxcomm"),
    ('tacacs-server key 7 "S-nxtacacs"', "S-nxtacacs"),
    ('radius-server host 192.0.2.11 key 7 "S-nxradius" authentication accounting',
     "S-nxradius"),
    ("router bgp 65000\n neighbor 192.0.2.7\n  password 3 S-nxbgp", "S-nxbgp"),
    ("interface Ethernet1/1\n ip ospf authentication-key 3 S-nxospf", "S-nxospf"),
    ("ntp authentication-key 1 md5 S-nxntp 7", "S-nxntp"),
    ("interface Ethernet1/1\n bfd authentication keyed-sha1 keyid 1 key S-nxbfd", "S-nxbfd"),
    ("ldap-server host 192.0.2.40 rootDN cn=x password 7 S-nxldap port 389", "S-nxldap"),
]
EOS = [
    ("username admin privilege 15 role network-admin secret sha512 $6$S-eosuser",
     "$6$S-eosuser"),
    ("enable password sha512 $6$S-eosenable", "$6$S-eosenable"),
    ("aaa root secret sha512 $6$S-eosroot", "$6$S-eosroot"),
    ("snmp-server community S-eoscomm ro", "S-eoscomm"),
    ("snmp-server user mon grp v3 localized 0x1234 auth sha S-eosauth priv aes S-eospriv",
     "S-eosauth"),
    ("snmp-server user mon grp v3 localized 0x1234 auth sha S-eosauth2 priv aes "
     "S-eospriv2", "S-eospriv2"),
    ("tacacs-server host 192.0.2.10 key 7 S-eostacacs", "S-eostacacs"),
    ("router bgp 65000\n neighbor 192.0.2.7 password 7 S-eosbgp", "S-eosbgp"),
    ("interface Ethernet1\n ip ospf message-digest-key 1 sha256 7 S-eossha", "S-eossha"),
    ("interface Vlan10\n vrrp 1 peer authentication text S-eosvrrp", "S-eosvrrp"),
    ("interface Vlan10\n vrrp 1 peer authentication ietf-md5 key-string 7 S-eosvrrpmd5",
     "S-eosvrrpmd5"),
    ("mac security\n profile P\n  key 1234 7 S-eosmacsec", "S-eosmacsec"),
]
CORPUS = {"cisco_ios": IOS + FRR, "cisco_iosxe": IOS + FRR, "cisco_nxos": IOS + FRR + NXOS,
          "arista_eos": IOS + FRR + EOS}
# Ordinary lines of the same platforms: never touched.
ORDINARY = """\
hostname r1
service password-encryption
security passwords min-length 8
key chain KC
 key 1
 key 7
 cryptographic-algorithm hmac-sha-256
interface Gi0/1
 description password reset desk, key to rack 4
 ip ospf authentication message-digest
 ip ospf authentication key-chain KC
 standby 1 authentication md5 key-chain KC
 ip address 10.0.0.1 255.255.255.0
router ospf 1
 area 0 authentication message-digest
 passive-interface default
router bgp 65000
 neighbor 192.0.2.7 remote-as 65001
 neighbor 192.0.2.7 passive
 neighbor 192.0.2.7 send-community both
route-map RM permit 10
 set community 65000:100 additive
crypto key generate rsa modulus 2048
ip ssh version 2
BGP routing table entry for 10.1.0.0/16
  Community: 65000:100
Youngest key id is 1
  Message digest authentication enabled
enable refused: the secret was not accepted
% Bad password for user ops
Password:\x20
Interface    IP-Address      OK? Method Status                Protocol
Gi0/1        10.0.0.1        YES NVRAM  up                    up
"""


def redactor(platform: str) -> Redactor:
    """The platform's redactor as a run makes it: its rules compiled as first applied."""
    found = platforms.get(platform)
    assert found is not None
    return Redactor([], found.secret_lines)


def variants(line: str) -> list[str]:
    """The line as typed and shown in other ways: upper case, blanks and tabs, abbreviated
    keywords, and inside other output."""
    last = line.splitlines()[-1]
    spaced = re.sub(r" (?=\S)", "  ", last)
    return [
        line, line.upper(), spaced, last.replace(" ", "\t"), spaced.upper(),
        abbreviated(last),
        f"+{last}", f"-{last.strip()}", f" hostname r1\n-{last.strip()}\n+{last.strip()}\n",
        f"r1(config-if)#{last.strip()}",
        f"    4     2          admin@vty0     |{last.strip()}",
        f"*Dec  7 01:02:03: %PARSER-5-CFGLOG_LOGGEDCMD: User:ops  logged command:{last.strip()}",
        json.dumps({"lines": [last.strip()]}),
    ]


ABBREVIATIONS = {"username": "usern", "password": "pass", "secret": "sec",
                 "snmp-server": "snmp-s", "community": "comm",
                 "authentication-key": "authentication-k",
                 "message-digest-key": "message-digest-k", "neighbor": "nei",
                 "key-string": "key-s", "tacacs-server": "tacacs-s", "enable": "ena",
                 "privilege": "priv"}


def abbreviated(line: str) -> str:
    words = [ABBREVIATIONS.get(w, w) for w in line.split(" ")]
    return " ".join(words)


@pytest.mark.parametrize("platform", sorted(CORPUS))
def test_every_secret_line_is_masked_however_it_is_written(platform: str) -> None:
    masker = redactor(platform)
    for line, secret in CORPUS[platform]:
        for variant in variants(line):
            masked = masker.text(variant)
            assert secret.lower() not in masked.lower(), (platform, variant, masked)
            assert MASK in masked


@pytest.mark.parametrize("platform", sorted(CORPUS))
def test_a_line_seen_before_is_masked_as_the_first_time(platform: str) -> None:
    """A redactor remembers the lines it masked (a fleet repeats them): each variant,
    masked again by the same redactor, reads as a fresh redactor masks it (case, blanks
    and context kept: the remembered text is the line's own, not a look-alike's)."""
    masker = redactor(platform)
    texts = [variant for line, _ in CORPUS[platform] for variant in variants(line)]
    texts += [ORDINARY, ORDINARY.upper()]
    first = [masker.text(text) for text in texts]
    assert [masker.text(text) for text in texts] == first
    assert [redactor(platform).text(text) for text in texts] == first


def test_the_remembered_lines_stay_bounded() -> None:
    masker = redactor("cisco_ios")
    for i in range(2 * MASKED_LINES + 10):
        assert masker.text(f"username u{i} secret 0 S-{i}x") == \
            f"username u{i} secret 0 {MASK}"
    assert 0 < len(masker._masked) <= MASKED_LINES


@pytest.mark.parametrize("platform", sorted(CORPUS))
def test_texts_of_lines_seen_and_new_are_masked_as_by_a_fresh_redactor(platform: str) -> None:
    """A device's output mixes lines the redactor saw in other outputs with its own: each
    text, in any order and mix, reads as a fresh redactor masks it."""
    lines = [variant for line, _ in CORPUS[platform] for variant in variants(line)]
    lines += [*ORDINARY.splitlines(), ORDINARY.upper(), "", " ", "!", "end\r"]
    shuffle = random.Random(28)  # noqa: S311  # a fixed, repeatable mix: no secret
    masker = redactor(platform)
    for _ in range(40):
        text = "\n".join(shuffle.sample(lines, k=shuffle.randint(1, min(30, len(lines)))))
        assert masker.text(text) == redactor(platform).text(text), text


def test_one_text_longer_than_the_bound_is_masked_whole_in_bounded_memory() -> None:
    masker = redactor("cisco_ios")
    count = MASKED_LINES + 5
    text = "\n".join(f"username u{i} secret 0 S-{i}x" for i in range(count))
    masked = masker.text(text).split("\n")
    assert masked == [f"username u{i} secret 0 {MASK}" for i in range(count)]
    assert len(masker._masked) <= MASKED_LINES


@pytest.mark.parametrize("platform", sorted(CORPUS))
def test_ordinary_lines_are_left_whole(platform: str) -> None:
    assert redactor(platform).text(ORDINARY) == ORDINARY


def test_a_line_with_two_secrets_loses_both_and_keeps_the_rest() -> None:
    line = "snmp-server user mon grp v3 auth sha S-one priv aes 128 S-two"
    assert redactor("cisco_ios").text(line) == \
        f"snmp-server user mon grp v3 auth sha {MASK} priv aes 128 {MASK}"


@pytest.mark.parametrize("platform", sorted(CORPUS))
def test_every_rule_of_the_platform_is_in_the_corpus(platform: str) -> None:
    """Each secret-bearing command the platform knows has a line of its own here."""
    found = platforms.get(platform)
    assert found is not None
    lines = [line.splitlines()[-1] for line, _ in CORPUS[platform]]
    for rule in found.secrets:
        assert any(rule.search(line) for line in lines), rule.pattern


def test_structured_values_under_secret_names_are_masked_whole() -> None:
    parsed = [{"user": "ops", "secret": "$9$abc", "community": "public", "Password": 1234,
               "auth_key": "k", "enabled": True, "key_id": 1, "pre-shared-key": "psk"}]
    assert Redactor().value(parsed) == [
        {"user": "ops", "secret": MASK, "community": MASK, "Password": MASK,
         "auth_key": MASK, "enabled": True, "key_id": 1, "pre-shared-key": MASK}]
    assert Redactor().text('{"password": "S-json", "name": "r1"}') == \
        f'{{"password": "{MASK}", "name": "r1"}}'
    # every spelling of a key/value secret in text a library, a URL or a job printed
    for text, kept in [("include token=T0k-1", "include token="),
                       ("GET /v1?access_token=T0k-2&x=1", "GET /v1?access_token="),
                       ("api-token: T0k-3", "api-token: "), ("'Token': 'T0k-4'", "'Token': "),
                       ("secret=T0k-5", "secret="), ("enable_password = T0k-6",
                                                     "enable_password = ")]:
        masked = Redactor().text(text)
        assert masked.startswith(kept) and "T0k" not in masked, masked
    # runner's own messages name fields (defaults.password): not key/value secrets
    message = "defaults.password: environment variable X is not set"
    assert Redactor().text(message) == message


@pytest.mark.parametrize(("rule", "problem"), [
    ("username <arg> secret", "exactly one <secret>"),
    ("username <secret> secret <secret>", "exactly one <secret>"),
    ("username (a|b <secret>", "missing ')'"),
    ("username <nope> <secret>", "unknown placeholder <nope>"),
    ("user_name <secret>", "'user_name' is not a keyword"),
])
def test_a_malformed_rule_is_refused(rule: str, problem: str) -> None:
    with pytest.raises(RuleError, match=re.escape(problem)):
        compile_rule(rule)


def test_a_redactor_takes_secret_line_rules_only() -> None:
    """A pattern that is not a compiled rule (no BOUNDARY in front, no `secret` group)
    would match lines and mask nothing in them: refused when the redactor is made."""
    rule = compile_rule("enable secret <secret>")
    assert Redactor([], [rule]).text("enable secret s3cr3t-x\n") == f"enable secret {MASK}\n"
    for pattern in (re.compile(r"enable secret (\S+)"),
                    re.compile(r"enable secret (?P<secret>\S+)"),
                    re.compile(rule.pattern.replace("(?P<secret>", "(?P<value>"))):
        with pytest.raises(ValueError, match="not a secret-line rule"):
            Redactor([], [rule, pattern])


@pytest.mark.parametrize("platform", sorted(CORPUS))
def test_rules_compiled_when_first_applied_mask_as_compiled_ones(platform: str) -> None:
    """A run's redactor compiles a rule when a line holds its keywords: the same text out
    as with every rule compiled up front, and a line no rule's keywords are in compiles
    none."""
    found = platforms.get(platform)
    assert found is not None
    lazy = [LazyRule(rule) for rule in found.secret_rules]  # fresh: none compiled yet
    masker, eager = Redactor([], lazy), Redactor([], found.secrets)
    assert [r.pattern for r in lazy] == [r.pattern for r in found.secrets]
    version = ("Cisco IOS Software, Version 15.2(4)M7\nr1 uptime is 1 day, 2 hours\n"
               "Processor board ID FTX0000\n")
    assert masker.text(version) == version
    assert [r for r in lazy if r._compiled is not None] == []  # no line for any rule
    assert masker.text(ORDINARY) == ORDINARY  # near misses: some rules tried, none matched
    for line, _ in CORPUS[platform]:
        for variant in variants(line):
            assert masker.text(variant) == eager.text(variant), variant
    assert all(r._compiled is not None for r in lazy)  # the corpus has a line for each


def test_a_malformed_rule_is_refused_when_made_not_when_applied() -> None:
    for rule in ("enable secret", "enable <secret> <secret>", "enable <secret> x"):
        with pytest.raises(RuleError):
            LazyRule(rule)
