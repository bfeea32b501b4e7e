# CMake toolchain file: arm-none-eabi-gcc for a Cortex-M4 with its FPU (hard float), the
# flags the Makefile beside this file uses. libspark.a for this ABI is built with
#   cargo build --release --target thumbv7em-none-eabihf --no-default-features --features panic-handler
# Use: cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=arm-none-eabi-cortex-m4.cmake ...
# For a Cortex-M33 (thumbv8m.main-none-eabihf) copy it with
# -mcpu=cortex-m33 -mfpu=fpv5-sp-d16.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
# No OS to link a test program against: CMake's compiler checks build a static library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(SPARK_ARCH_FLAGS "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16")
set(CMAKE_C_FLAGS_INIT "${SPARK_ARCH_FLAGS}")
set(CMAKE_ASM_FLAGS_INIT "${SPARK_ARCH_FLAGS}")
# CMake passes CMAKE_C_FLAGS to the link step as well, so the linker picks the same
# multilib (thumb/v7e-m+fp/hard) of newlib and libgcc.

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
