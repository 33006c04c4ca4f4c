//! Reads struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).
//! Rust eBPF programs have no CO-RE, so the loader passes these offsets in as globals.

use anyhow::{anyhow, bail, Result};

/// The running kernel's BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;

pub use ipctrace_common::KernelOffsets;

/// The offsets the programs need, from the kernel's BTF blob (`vmlinux`, as
/// `requirements::check` read it and found usable).
pub fn offsets_from_vmlinux(vmlinux: &[u8]) -> Result<KernelOffsets> {
    let btf = KernelBtf::parse(vmlinux).map_err(|e| anyhow!("{VMLINUX} is not usable ({e})"))?;
    offsets_from(&btf)
}

fn offsets_from(btf: &KernelBtf) -> Result<KernelOffsets> {
    let reg = |name: &str| btf.member_offset("pt_regs", &[name]);
    {
        Ok(KernelOffsets {
            task_pid: btf.member_offset("task_struct", &["pid"])?,
            task_tgid: btf.member_offset("task_struct", &["tgid"])?,
            task_nsproxy: btf.member_offset("task_struct", &["nsproxy"])?,
            task_comm: btf.member_offset("task_struct", &["comm"])?,
            task_group_leader: btf.member_offset("task_struct", &["group_leader"])?,
            task_start_boottime: btf.member_offset("task_struct", &["start_boottime"])?,
            nsproxy_ipc_ns: btf.member_offset("nsproxy", &["ipc_ns"])?,
            ipc_ns_inum: btf.member_offset("ipc_namespace", &["ns", "inum"])?,
            // x86-64's syscall convention: the arguments in di, si, dx, r10, r8, r9.
            regs_args: [
                reg("di")?,
                reg("si")?,
                reg("dx")?,
                reg("r10")?,
                reg("r8")?,
                reg("r9")?,
            ],
            regs_orig_ax: reg("orig_ax")?,
            regs_cs: reg("cs")?,
            _pad: 0,
        })
    }
}

pub use ipctrace_common::SemUndoOffsets;

/// Where each process's SEM_UNDO adjustments sit, for the `sem_undo_lists` iterator.
pub fn sem_undo_offsets(btf: &KernelBtf) -> Result<SemUndoOffsets> {
    Ok(SemUndoOffsets {
        task_undo_list: btf.member_offset("task_struct", &["sysvsem", "undo_list"])?,
        list_proc: btf.member_offset("sem_undo_list", &["list_proc"])?,
        undo_list_proc: btf.member_offset("sem_undo", &["list_proc"])?,
        undo_semid: btf.member_offset("sem_undo", &["semid"])?,
        undo_semadj: btf.member_offset("sem_undo", &["semadj"])?,
        semadj_is_pointer: btf.member_is_pointer("sem_undo", "semadj")? as u32,
    })
}

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

/// A type's common header (see btf.h), read from the section when asked for.
struct Type {
    name_off: u32,
    kind: u32,
    referenced: u32, // the type a typedef, qualifier or pointer refers to
    kind_flag: bool,
    vlen: u32,   // number of members, enumerators or parameters
    data: usize, // where the kind-specific data starts in the type section
}

/// Just enough of a BTF blob to resolve struct member offsets. It borrows the blob and keeps
/// only where each type starts (4 bytes a type, 0.6 MB for a kernel): ipctrace's memory peaks
/// while it starts, and a full parse would be most of that peak.
pub struct KernelBtf<'a> {
    section: &'a [u8], // the raw type section
    strings: &'a [u8],
    starts: Vec<u32>, // index = type id - 1 (id 0 is void)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    let bytes = data
        .get(at..at + 4)
        .ok_or_else(|| anyhow!("BTF truncated at {at}"))?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

impl<'a> KernelBtf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(BTF_MAGIC) {
            bail!("not a little-endian BTF blob");
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = hdr_len + u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = hdr_len + u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let strings = data
            .get(str_off..str_off + str_len)
            .ok_or_else(|| anyhow!("BTF string section out of bounds"))?;
        let section = data
            .get(type_off..type_off + type_len)
            .ok_or_else(|| anyhow!("BTF type section out of bounds"))?;
        let mut btf = Self {
            section,
            strings,
            starts: Vec::with_capacity(type_len / 32),
        };
        let mut at = 0;
        while at < section.len() {
            let ty = btf.type_at(at)?;
            // Sizes of the data following each kind's common header (see btf.h).
            let extra = match ty.kind {
                1 | 14 | 17 => 4,                         // INT, VAR, DECL_TAG
                3 => 12,                                  // ARRAY
                KIND_STRUCT | KIND_UNION => 12 * ty.vlen, // members
                6 | 13 => 8 * ty.vlen,                    // ENUM, FUNC_PROTO
                15 | 19 => 12 * ty.vlen,                  // DATASEC, ENUM64
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                other => bail!("unknown BTF kind {other}"),
            } as usize;
            if ty.data + extra > section.len() {
                bail!("BTF type section truncated");
            }
            btf.starts.push(at as u32);
            at = ty.data + extra;
        }
        Ok(btf)
    }

    /// The type whose header starts at `at` in the type section.
    fn type_at(&self, at: usize) -> Result<Type> {
        let info = u32_at(self.section, at + 4)?;
        Ok(Type {
            name_off: u32_at(self.section, at)?,
            kind: (info >> 24) & 0x1f,
            referenced: u32_at(self.section, at + 8)?,
            kind_flag: info >> 31 == 1,
            vlen: info & 0xffff,
            data: at + 12,
        })
    }

    fn type_by_id(&self, id: u32) -> Option<Type> {
        let at = *self.starts.get((id as usize).checked_sub(1)?)?;
        self.type_at(at as usize).ok()
    }

    /// The members of a struct or union, read from the raw section.
    fn members(&self, ty: &Type) -> impl Iterator<Item = Member> + '_ {
        let count = if matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
            ty.vlen as usize
        } else {
            0
        };
        let (data, kind_flag) = (ty.data, ty.kind_flag);
        (0..count).filter_map(move |m| {
            let base = data + 12 * m;
            let offset = u32_at(self.section, base + 8).ok()?;
            Some(Member {
                name_off: u32_at(self.section, base).ok()?,
                type_id: u32_at(self.section, base + 4).ok()?,
                bit_offset: if kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                },
            })
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// Whether a typedef of this name exists (the kernel emits `btf_trace_<tracepoint>` ones for
    /// the tracepoints tp_btf programs attach to).
    pub fn has_typedef(&self, name: &str) -> bool {
        self.starts
            .iter()
            .filter_map(|&at| self.type_at(at as usize).ok())
            .any(|t| t.kind == KIND_TYPEDEF && self.name(t.name_off) == name.as_bytes())
    }

    fn struct_named(&self, name: &str) -> Option<Type> {
        self.starts
            .iter()
            .filter_map(|&at| self.type_at(at as usize).ok())
            .find(|t| {
                t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name.as_bytes()
            })
    }

    /// Byte offset of `path` (e.g. ["ns", "inum"]) inside struct `outer`, looking through
    /// anonymous struct and union members as C does.
    pub fn member_offset(&self, outer: &str, path: &[&str]) -> Result<u32> {
        let mut ty = self
            .struct_named(outer)
            .ok_or_else(|| anyhow!("kernel BTF has no struct {outer}"))?;
        let mut bits = 0;
        for field in path {
            let (offset, type_id) = self.find_member(&ty, field, 0).ok_or_else(|| {
                anyhow!(
                    "kernel BTF: struct {outer} has no member {}",
                    path.join(".")
                )
            })?;
            bits += offset;
            ty = self.resolve_aggregate(type_id).unwrap_or(ty);
        }
        if bits % 8 != 0 {
            bail!("{outer}.{} is a bit field", path.join("."));
        }
        Ok(bits / 8)
    }

    /// Whether member `name` of struct `outer` is a pointer (through typedefs and qualifiers).
    pub fn member_is_pointer(&self, outer: &str, name: &str) -> Result<bool> {
        let ty = self
            .struct_named(outer)
            .ok_or_else(|| anyhow!("kernel BTF has no struct {outer}"))?;
        let (_, mut id) = self
            .find_member(&ty, name, 0)
            .ok_or_else(|| anyhow!("kernel BTF: struct {outer} has no member {name}"))?;
        for _ in 0..16 {
            let ty = self
                .type_by_id(id)
                .ok_or_else(|| anyhow!("kernel BTF: bad type id {id}"))?;
            match ty.kind {
                KIND_PTR => return Ok(true),
                8..=11 | 18 => id = ty.referenced,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    fn find_member(&self, ty: &Type, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for m in self.members(ty) {
            let member_name = self.name(m.name_off);
            if member_name == name.as_bytes() {
                return Some((m.bit_offset, m.type_id));
            }
            if member_name.is_empty() {
                if let Some(inner) = self.resolve_aggregate(m.type_id) {
                    if let Some((off, id)) = self.find_member(&inner, name, depth + 1) {
                        return Some((m.bit_offset + off, id));
                    }
                }
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to a struct or union with members.
    fn resolve_aggregate(&self, mut id: u32) -> Option<Type> {
        for _ in 0..16 {
            let ty = self.type_by_id(id)?;
            match ty.kind {
                KIND_STRUCT | KIND_UNION => return Some(ty),
                8..=11 | 18 => id = ty.referenced,
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_the_running_kernel() {
        let o = offsets_from_vmlinux(&std::fs::read(VMLINUX).unwrap()).unwrap();
        // tgid directly follows pid in task_struct; inum sits past ns_common's first members.
        assert_eq!(o.task_tgid, o.task_pid + 4);
        assert!(o.task_nsproxy > o.task_tgid);
        assert!(o.ipc_ns_inum > 0 && o.nsproxy_ipc_ns > 0);
        // start_boottime directly follows start_time (both u64).
        assert!(o.task_group_leader > o.task_tgid && o.task_start_boottime > o.task_tgid);
        // The layout of arch/x86/include/asm/ptrace.h (user space's struct user_regs_struct).
        assert_eq!(o.regs_args, [112, 104, 96, 56, 72, 64]);
        assert_eq!((o.regs_orig_ax, o.regs_cs), (120, 136));
    }

    #[test]
    fn sem_undo_layout_of_the_running_kernel() {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").unwrap();
        let o = sem_undo_offsets(&KernelBtf::parse(&data).unwrap()).unwrap();
        // sem_undo starts with its list_proc link; semid and semadj come last.
        assert_eq!(o.undo_list_proc, 0);
        assert!(o.undo_semadj > o.undo_semid && o.list_proc > 0);
        // 6.x keeps semadj[] inline at the end of the entry (a flexible array).
        assert_eq!(o.semadj_is_pointer, 0);
    }

    #[test]
    fn the_running_kernel_has_the_typedefs_of_tp_btf() {
        let data = std::fs::read(VMLINUX).unwrap();
        let btf = KernelBtf::parse(&data).unwrap();
        assert!(btf.has_typedef("btf_trace_sched_switch"));
        assert!(!btf.has_typedef("btf_trace_no_such_tracepoint"));
        // A struct of that name is not a typedef.
        assert!(!btf.has_typedef("task_struct"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(KernelBtf::parse(b"").is_err());
        assert!(
            KernelBtf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0]).is_err()
        );
    }
}
