import BouncerCore
import Testing
