//! TODO-scaffold
