# Regenerates src/commands/table/specs.rs from a running redis-server 7.0 on port 7777:
#   python3 tools/gen_command_table.py > src/commands/table/specs.rs
# Then review the diff (Tandem-only entries are written by hand in the script).
import socket
class R:
    def __init__(s, port=7777):
        s.s=socket.create_connection(('127.0.0.1',port)); s.f=s.s.makefile('rb')
    def cmd(s,*a):
        out=b'*%d\r\n'%len(a)
        for x in a:
            x=x if isinstance(x,bytes) else str(x).encode()
            out+=b'$%d\r\n%s\r\n'%(len(x),x)
        s.s.sendall(out); return s.read()
    def read(s):
        l=s.f.readline()[:-2]; t=l[:1]; r=l[1:]
        if t==b'+': return r.decode()
        if t==b'-': return Exception(r.decode())
        if t==b':': return int(r)
        if t==b'$':
            n=int(r)
            if n<0: return None
            d=s.f.read(n+2)[:-2]; return d.decode('latin1')
        if t==b'*':
            n=int(r)
            if n<0: return None
            return [s.read() for _ in range(n)]
        if t==b'%':
            n=int(r); return {s.read(): s.read() for _ in range(n)}
        raise Exception('bad '+repr(l))

r=R()
data="get set setnx setex psetex getset getdel getex mget mset msetnx append strlen incr decr incrby decrby incrbyfloat getrange setrange substr del unlink exists type expire pexpire expireat pexpireat expiretime pexpiretime ttl pttl persist rename renamenx keys scan randomkey dbsize flushdb flushall".split()
server="ping echo hello auth select quit reset client command info config time shutdown multi exec discard debug wait role lastsave save bgsave replicaof slaveof failover readonly readwrite".split()
def q(s): return '"'+s.replace('\\','\\\\').replace('"','\\"')+'"'
def strs(l): return '&['+', '.join(q(x) for x in l)+']'
def spec(info, docs, indent, subs_name=None):
    name,arity,flags,fk,lk,step,acl=info[:7]
    d=dict(zip(docs[::2],docs[1::2])) if isinstance(docs,list) else docs
    sub = subs_name or "&[]"
    return f'''{indent}CommandSpec {{
{indent}    name: {q(name)},
{indent}    arity: {arity},
{indent}    flags: {strs(flags)},
{indent}    first_key: {fk},
{indent}    last_key: {lk},
{indent}    step: {step},
{indent}    acl_categories: {strs(acl)},
{indent}    group: {q(d.get('group',''))},
{indent}    summary: {q(d.get('summary',''))},
{indent}    since: {q(d.get('since',''))},
{indent}    complexity: {q(d.get('complexity',''))},
{indent}    subcommands: {sub},
{indent}}},'''
out=[]; subs=[]
entries=[]
for n in data+server:
    info=r.cmd('command','info',n)[0]
    docs=r.cmd('command','docs',n)
    dd=dict(zip(docs[::2],docs[1::2]))[n]
    dd=dict(zip(dd[::2],dd[1::2]))
    subname=None
    if info[9]:
        subname=n.upper()+"_SUBCOMMANDS"
        sd=dd.get('subcommands',[])
        sd=dict(zip(sd[::2],sd[1::2]))
        items=[]
        for si in sorted(info[9], key=lambda x:x[0]):
            sdoc=sd.get(si[0],[])
            items.append(spec(si, sdoc, '    '))
        subs.append(f"static {subname}: &[CommandSpec] = &[\n"+"\n".join(items)+"\n];\n")
        subname=subname
    entries.append((n, spec(info, dd, '    ', subname)))
entries.append(("digest.get", f'''    CommandSpec {{
        name: "digest.get",
        arity: 2,
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl_categories: &["@read", "@string", "@fast"],
        group: "string",
        summary: "Tandem: get the value of a key with its checksum algorithm and hex digest",
        since: "0.1.0",
        complexity: "O(N) where N is the length of the value (it is verified)",
        subcommands: &[],
    }},'''))
entries.append(("digest.set", f'''    CommandSpec {{
        name: "digest.set",
        arity: 5,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl_categories: &["@write", "@string", "@slow"],
        group: "string",
        summary: "Tandem: set the value of a key only if it matches the client's digest",
        since: "0.1.0",
        complexity: "O(N) where N is the length of the value (it is hashed)",
        subcommands: &[],
    }},'''))
entries.append(("sentinel", f'''    CommandSpec {{
        name: "sentinel",
        arity: -2,
        flags: &["admin", "loading", "stale"],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl_categories: &["@admin", "@slow", "@dangerous"],
        group: "sentinel",
        summary: "A container for Redis Sentinel commands (Tandem serves the discovery subset)",
        since: "2.8.4",
        complexity: "Depends on subcommand.",
        subcommands: &[],
    }},'''))
entries.sort(key=lambda e:e[0])
print("// Generated from redis-server 7.0.15's COMMAND INFO and COMMAND DOCS (see table.rs).")
print("// Sorted by name: `lookup` binary-searches it.")
print("use super::CommandSpec;\n")
print("/// Every command Tandem serves, sorted by name.")
print("pub static COMMANDS: &[CommandSpec] = &[")
for n,e in entries: print(e)
print("];\n")
for s in subs: print(s)
