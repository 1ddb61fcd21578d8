//! The return values of the extrinsic methods, as the profiles name them: RequestStateChange
//! (DSP1057 and CIM_EnabledLogicalElement), the management service's methods (DSP1042),
//! the resource pool configuration service's (DSP1041), the snapshot service's and the
//! jobs' (DSP1103) share one numbering; the migration service's (DSP1081) and the OVF
//! import and export methods (numbered as DSP1042's DefineSystem is) have their own.

use cim_schema::Value;

use super::migration::Refusal;
use crate::vm::ChangeError;

/// Gives each return-code enum (`#[repr(u32)]`, numbered as its method's ValueMap) its
/// number and its uint32 return value.
macro_rules! uint32_return_code {
    ($($code:ty),+) => {$(
        impl $code {
            /// The number, as the method's ValueMap has it.
            pub fn number(self) -> u32 {
                self as u32
            }
        }

        /// The uint32 return value.
        impl From<$code> for Value {
            fn from(code: $code) -> Value {
                Value::UInt32(code.number())
            }
        }
    )+};
}

uint32_return_code!(ReturnCode, MigrationReturnCode, PortabilityReturnCode);

/// A method's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ReturnCode {
    /// 0: Completed with No Error.
    Completed = 0,
    /// 1: Not Supported.
    NotSupported = 1,
    /// 3: Cannot complete within Timeout Period.
    Timeout = 3,
    /// 4: Failed.
    Failed = 4,
    /// 4096: Method Parameters Checked - Job Started.
    JobStarted = 4096,
    /// 4097: Invalid State Transition.
    InvalidStateTransition = 4097,
    /// 4099: Busy.
    Busy = 4099,
}

/// What RequestStateChange (and the methods that change a VM's state) return for a change
/// not made.
impl From<&ChangeError> for ReturnCode {
    fn from(error: &ChangeError) -> ReturnCode {
        match error {
            ChangeError::InvalidTransition(_) => ReturnCode::InvalidStateTransition,
            ChangeError::Busy => ReturnCode::Busy,
            ChangeError::Timeout(_) => ReturnCode::Timeout,
            ChangeError::Failed(_) | ChangeError::Cancelled => ReturnCode::Failed,
        }
    }
}

/// The migration service's return value (DSP1081's CIM_VirtualSystemMigrationService).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MigrationReturnCode {
    /// 0: Completed with No Error.
    Completed = 0,
    /// 1: Not Supported.
    NotSupported = 1,
    /// 2: Failed.
    Failed = 2,
    /// 3: Timeout.
    Timeout = 3,
    /// 4: Invalid Parameter.
    InvalidParameter = 4,
    /// 5: Invalid State.
    InvalidState = 5,
    /// 4096: Method Parameters Checked - Job Started.
    JobStarted = 4096,
    /// 4099, from the range DSP1081 reserves for the method: another migration of the VM
    /// is in progress (DSP1057's Busy).
    Busy = 4099,
}

/// What the migration methods return for a migration refused.
impl From<&Refusal> for MigrationReturnCode {
    fn from(refusal: &Refusal) -> MigrationReturnCode {
        match refusal {
            Refusal::InvalidState(_) => MigrationReturnCode::InvalidState,
            Refusal::InvalidParameter(_) => MigrationReturnCode::InvalidParameter,
            Refusal::Busy => MigrationReturnCode::Busy,
            Refusal::Failed(_) => MigrationReturnCode::Failed,
        }
    }
}

/// The return value of ImportSystemDefinition and ExportSystemDefinition, numbered as
/// CIM_VirtualSystemManagementService numbers DefineSystem's (DSP1042), with Busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PortabilityReturnCode {
    /// 2: Failed.
    Failed = 2,
    /// 3: Timeout.
    Timeout = 3,
    /// 5: Invalid State (the VM is not stopped or saved).
    InvalidState = 5,
    /// 4096: Method Parameters Checked - Job Started.
    JobStarted = 4096,
    /// 4099: Busy (another change of the VM is under way).
    Busy = 4099,
}

/// What an export that does not start returns.
impl From<&ChangeError> for PortabilityReturnCode {
    fn from(error: &ChangeError) -> PortabilityReturnCode {
        match error {
            ChangeError::InvalidTransition(_) => PortabilityReturnCode::InvalidState,
            ChangeError::Busy => PortabilityReturnCode::Busy,
            ChangeError::Timeout(_) => PortabilityReturnCode::Timeout,
            ChangeError::Failed(_) | ChangeError::Cancelled => PortabilityReturnCode::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_are_their_value_maps_numbers_as_uint32() {
        assert_eq!(Value::from(ReturnCode::JobStarted), Value::UInt32(4096));
        assert_eq!(ReturnCode::from(&ChangeError::Busy).number(), 4099);
        assert_eq!(Value::from(MigrationReturnCode::Failed), Value::UInt32(2));
        assert_eq!(
            Value::from(PortabilityReturnCode::from(&ChangeError::Cancelled)),
            Value::UInt32(2)
        );
    }
}
