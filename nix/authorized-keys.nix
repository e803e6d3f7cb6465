# The check of one `ssh.authorizedKeys` entry at evaluation time: the rules of the publish side
# (crates/publish/src/authorized_keys.rs) as far as Nix can follow them. One key per entry,
# `TYPE BASE64 [COMMENT]`: a key type dropbear accepts, no options before it (`command=`,
# `no-pty`, …: dropbear and OpenSSH read them differently, and a key that logs in as root on
# every node should carry no surprises), no control character (a line break would smuggle in a
# second line), and base64 whose first bytes name that key type. Nix cannot decode base64, so
# the last check compares the encoded prefix: the wire format starts with the type's length
# (4 bytes) and name, whose base64 is fixed up to the last whole 3-byte group.
{ lib }:
let
  # Key type → base64 of the first ⌊(4 + length) / 3⌋ · 3 bytes of its wire format.
  prefixes = {
    "ssh-ed25519" = "AAAAC3NzaC1lZDI1NTE5";
    "ecdsa-sha2-nistp256" = "AAAAE2VjZHNhLXNoYTItbmlzdHAy";
    "ecdsa-sha2-nistp384" = "AAAAE2VjZHNhLXNoYTItbmlzdHAz";
    "ecdsa-sha2-nistp521" = "AAAAE2VjZHNhLXNoYTItbmlzdHA1";
    "ssh-rsa" = "AAAAB3NzaC1y";
    "sk-ssh-ed25519@openssh.com" = "AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t";
    "sk-ecdsa-sha2-nistp256@openssh.com" = "AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5j";
  };

  # authorized_keys options that take no value (the others have `=`).
  flagOptions = [
    "agent-forwarding"
    "cert-authority"
    "no-agent-forwarding"
    "no-port-forwarding"
    "no-pty"
    "no-user-rc"
    "no-X11-forwarding"
    "no-touch-required"
    "port-forwarding"
    "pty"
    "restrict"
    "user-rc"
    "verify-required"
    "X11-forwarding"
  ];

  # Tabs separate words; every other control character (line breaks included) is refused.
  hasControl =
    key: builtins.match "[^[:cntrl:]]*" (builtins.replaceStrings [ "\t" ] [ " " ] key) == null;

  # TYPE, BASE64 and the rest (the comment, maybe empty), split on blanks.
  parts = key: builtins.match "[ \t]*([^ \t]*)[ \t]*([^ \t]*)[ \t]*(.*)" key;

  typeProblem =
    first:
    if lib.hasInfix "=" first || lib.hasInfix "," first || lib.elem first flagOptions then
      "options before the key (${builtins.toJSON first}) are not accepted: give only `TYPE BASE64 [COMMENT]`"
    else
      "${builtins.toJSON first} is not a key type (expected one of ${lib.concatStringsSep ", " (lib.attrNames prefixes)})";

  blobProblem =
    type: blob:
    if blob == "" then
      "${type} without its base64 key"
    else if
      builtins.match "[A-Za-z0-9+/]*={0,2}" blob == null
      || lib.mod (builtins.stringLength blob) 4 != 0
    then
      "the ${type} key is not valid base64"
    else if !lib.hasPrefix prefixes.${type} blob then
      "the base64 key is not a ${type} key (its data names another type)"
    else
      null;
in
{
  keyTypes = lib.attrNames prefixes;

  # What is wrong with `key`, or null.
  problem =
    key:
    if lib.hasInfix "\n" key || lib.hasInfix "\r" key then
      "holds a line break: give one key per list element"
    else if hasControl key then
      "holds a control character"
    else
      let
        p = parts key;
        first = builtins.elemAt p 0;
      in
      if first == "" then
        "is empty"
      else if !(prefixes ? ${first}) then
        typeProblem first
      else
        blobProblem first (builtins.elemAt p 1);
}
